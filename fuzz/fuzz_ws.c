/* Fuzz target: WebSocket framing (ws.c), client frames read one after
 * another from the input.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Icsrc \
 *       fuzz/fuzz_ws.c -o fuzz/bin/fuzz_ws
 *   fuzz/bin/fuzz_ws -max_total_time=180 fuzz/corpus/ws
 *
 * Besides memory errors it aborts when a verdict is not a close code the
 * framing gives, when a frame's payload is not all accounted for, or when
 * giving the payloads in pieces (of sizes the first byte picks) changes
 * the verdict or, for an input without one, the bytes unmasked. */
#include "../csrc/utf8.c"
#include "../csrc/ws.c"

#include <stdlib.h>
#include <string.h>

/* Read every frame of buf (modified in place: unmasked), payloads given
 * step bytes at a time (0: whole). Returns the verdict: 0 when the input
 * ran out cleanly or mid-frame, else the negative close code. */
static int run(uint8_t *buf, size_t len, size_t step, int rsv1_ok)
{
    lx_ws_parser_t p;
    lx_ws_parser_init(&p, 1000, rsv1_ok);
    size_t off = 0;
    for (;;) {
        int rc = lx_ws_frame_head(&p, buf + off, len - off);
        if (rc == LX_AGAIN)
            return 0;
        if (rc < 0) {
            if (rc != -1002 && rc != -1009 && rc != -1007)
                abort();
            return rc;
        }
        if (rc < 6 || rc > 14 || p.remaining != p.length)
            abort();
        if (p.opcode >= 8 && p.length > 125)
            abort();
        off += (size_t)rc;
        while (p.remaining > 0) {
            if (off >= len)
                return 0;
            size_t n = len - off;
            if (n > p.remaining)
                n = (size_t)p.remaining;
            if (step && n > step)
                n = step;
            uint64_t before = p.remaining;
            int v = lx_ws_payload(&p, buf + off, n);
            if (p.remaining != before - n)
                abort();
            off += n;
            if (v < 0) {
                if (v != -1007)
                    abort();
                return v;
            }
        }
        if (p.opcode == LX_WS_CLOSE) {
            int code;
            int v = lx_ws_close_payload(buf + off - p.length, (size_t)p.length,
                                        &code);
            if (v == 0 && code != LX_WS_NO_STATUS &&
                !lx_ws_close_code_ok(code))
                abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 1 << 16)
        return 0;
    size_t step = (size_t)(data[0] % 17);
    int rsv1_ok = data[0] & 0x80;
    uint8_t *a = malloc(size), *b = malloc(size);
    memcpy(a, data + 1, size - 1);
    memcpy(b, data + 1, size - 1);
    int va = run(a, size - 1, 0, rsv1_ok);
    int vb = run(b, size - 1, step, rsv1_ok);
    /* (after a verdict the rest is never unmasked: compare clean runs) */
    if (va != vb || (va == 0 && memcmp(a, b, size - 1) != 0))
        abort();
    /* what a server frame's header says, read back */
    uint64_t len = 0;
    for (size_t i = 1; i < size && i < 9; i++)
        len = len << 8 | data[i];
    len >>= 1;
    uint8_t h[10];
    size_t hl = lx_ws_head(h, LX_WS_BINARY, 1, 0, len);
    uint64_t back = h[1] & 0x7f;
    if (back == 126)
        back = (uint64_t)h[2] << 8 | h[3];
    else if (back == 127)
        for (int i = 0, k = (back = 0, 0); i < 8; i++, k++)
            back = back << 8 | h[2 + i];
    if (back != len || hl < 2 || hl > 10)
        abort();
    char out[29];
    lx_ws_accept((const char *)data, size > 300 ? 300 : size, out);
    if (strlen(out) != 28)
        abort();
    free(a);
    free(b);
    return 0;
}
