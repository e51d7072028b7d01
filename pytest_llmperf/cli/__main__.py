"""``python -m pytest_llmperf.cli``: the ``llmperf`` command."""

import sys

from pytest_llmperf.cli.main import main

sys.exit(main())
