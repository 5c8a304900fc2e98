/*
 * shadowd/candump.h: a parser of candump -L text logs into columns or CAN_RAW records (replay's
 * CAN reader).
 *
 * One line per frame, as `candump -L` writes it:  (SECONDS.FRACTION) CHANNEL ID#DATA
 * (CAN-FD: ID##<flags nibble>DATA). The accepted grammar is exactly the one of the reference
 * parser in shadowd/edges/can_ingest.py (_CANDUMP_RE), per line:
 *   ws* '(' digit+ '.' digit+ ')' ws+ CHANNEL ws+ hex{1,8} '#' '#'? [hex .]* ws*
 * where ws is space, tab, \v or \f; lines end at \n or \r; blank lines are skipped. A '.' in
 * DATA is a separator and is dropped; DATA must then hold an even number of hex digits.
 * Any other line is counted in info->malformed_lines and skipped; parsing goes on.
 * Stricter than the reference on purpose (it would fail later or wrap): a payload over 64
 * bytes, or a timestamp that does not fit int64 nanoseconds, makes a line malformed.
 *
 * Outputs, row i = i-th accepted line: t_ns (seconds * 1e9 + the first 9 fraction digits),
 * channel (index into info->channel, in order of first appearance; trailing NUL bytes of a
 * name are dropped, as the reference parser's numpy bytes arrays drop them), can_id, dlc (payload
 * bytes), flags (1 = extended id, i.e. more than 3 id digits; 2 = CAN-FD), data (data_stride
 * bytes per row, 1..64, zero past dlc; 8 holds classic CAN, 64 any frame). The caller sizes
 * the columns for max_rows rows; the shortest line takes 11 bytes with its terminator, so
 * len / 10 + 1 rows are always enough.
 *
 * RETURN: the number of rows (>= 0), or a negative errno:
 *   -EINVAL   a NULL pointer, or data_stride outside 1..64
 *   -ENOSPC   more accepted lines than max_rows
 *   -EMSGSIZE a payload longer than data_stride (call again with a stride of 64)
 *   -E2BIG    more than 64 distinct channels, or a channel name over 63 bytes: the caller
 *             should use its general parser for such a log
 *
 * shadowd_candump_parse_records: the same parse (same grammar, rows, info and errors but
 * -EMSGSIZE, which cannot happen) into records laid out as shadowd's CAN_RAW_DTYPE (80 bytes:
 * t_ns, bus, dlc, flags, can_id, data[64]; shadowd/core/signals.py), so that an array of them is
 * the can_raw topic as it stands: `bus` holds the channel index (the caller maps channels to
 * buses in place), data is zero past dlc. Python checks the numpy dtype against this struct
 * before it uses the function.
 *
 * Pure functions: no allocation, no globals, no I/O; thread-safe.
 *
 * Everything between cffi-begin and cffi-end is also the cffi cdef (native/build_ffi.py).
 */
#ifndef SHADOWD_CANDUMP_H
#define SHADOWD_CANDUMP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* cffi-begin */
#define SHADOWD_CANDUMP_ABI_VERSION 2 /* 2: shadowd_candump_parse_records */
#define SHADOWD_CANDUMP_MAX_CHANNELS 64
#define SHADOWD_CANDUMP_MAX_CHANNEL_LEN 63
#define SHADOWD_CANDUMP_DATA_BYTES 64
#define SHADOWD_CANDUMP_FLAG_EXTENDED 1
#define SHADOWD_CANDUMP_FLAG_FD 2

struct shadowd_candump_info {
	uint64_t malformed_lines;
	uint32_t max_dlc;
	uint32_t n_channels;
	uint8_t channel_len[64];
	char channel[64][64];
};

int shadowd_candump_abi_version(void);
int64_t shadowd_candump_parse(const uint8_t *text, size_t len, size_t max_rows, int64_t *t_ns,
			      uint16_t *channel, uint32_t *can_id, uint8_t *dlc, uint16_t *flags,
			      uint8_t *data, size_t data_stride, struct shadowd_candump_info *info);

struct shadowd_can_raw {
	int64_t t_ns;
	uint8_t bus; /* the channel index (into info->channel) as parsed */
	uint8_t dlc;
	uint16_t flags;
	uint32_t can_id;
	uint8_t data[64];
};

int64_t shadowd_candump_parse_records(const uint8_t *text, size_t len, size_t max_rows,
				      struct shadowd_can_raw *records, struct shadowd_candump_info *info);
/* cffi-end */

#ifdef __cplusplus
}
#endif

#endif /* SHADOWD_CANDUMP_H */
