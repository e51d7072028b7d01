/* Does this machine run AMX tile instructions? Exit 0 when it does.
 *
 * A CPU flag is not enough: virtual machines advertise amx_tile, some kernels even grant
 * the permission (arch_prctl ARCH_REQ_XCOMP_PERM for XTILEDATA), and tileloadd still
 * faults. A llama.cpp built with AMX then dies with SIGILL on every quantized prompt.
 * scripts/build-llama-cpp.sh and pytest_llmperf.builds compile and run this probe in a
 * child process; anything but a clean exit means: build without AMX. */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

struct tile_config {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
};

int main(void) {
    static uint8_t buf[16 * 64];
    struct tile_config cfg;
    if (syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */))
        return 2;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    cfg.rows[0] = 16;
    cfg.colsb[0] = 64;
    _tile_loadconfig(&cfg);
    _tile_loadd(0, buf, 64);
    _tile_release();
    return 0;
}
