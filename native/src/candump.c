/*
 * candump.c: candump -L text -> columns or CAN_RAW records (see include/shadowd/candump.h for
 * the grammar, the outputs and the return codes). One pass over the text, no allocation: each
 * line is parsed byte by byte up to its terminator (no separate search for the line end first),
 * and a line is fully validated before anything of it counts, so a malformed line leaves no
 * trace but its count. Replay spends most of its decode time here when this is done in Python.
 */
#include "shadowd/candump.h"

#include <errno.h>
#include <string.h>

#define NS_PER_S 1000000000LL
/* t_ns = sec * 1e9 + frac must fit int64: INT64_MAX = 9223372036 s + 854775807 ns */
#define SEC_MAX 9223372036LL
#define FRAC_AT_SEC_MAX 854775807LL
#define DATA_BYTES SHADOWD_CANDUMP_DATA_BYTES
#define ALWAYS_INLINE static inline __attribute__((always_inline))

_Static_assert(sizeof(struct shadowd_can_raw) == 80, "struct shadowd_can_raw must match CAN_RAW_DTYPE");
_Static_assert(offsetof(struct shadowd_can_raw, data) == 16, "struct shadowd_can_raw must match CAN_RAW_DTYPE");

int shadowd_candump_abi_version(void)
{
	return SHADOWD_CANDUMP_ABI_VERSION;
}

/* Character classes of the grammar, one table lookup per byte. */
#define C_WS 1    /* space \t \v \f */
#define C_TERM 2  /* \n \r */
#define C_PAYLOAD 4 /* hex digit or '.' */

static const uint8_t char_class[256] = {
	[' '] = C_WS, ['\t'] = C_WS, ['\v'] = C_WS, ['\f'] = C_WS, ['\n'] = C_TERM, ['\r'] = C_TERM,
	['0'] = C_PAYLOAD, ['1'] = C_PAYLOAD, ['2'] = C_PAYLOAD, ['3'] = C_PAYLOAD, ['4'] = C_PAYLOAD,
	['5'] = C_PAYLOAD, ['6'] = C_PAYLOAD, ['7'] = C_PAYLOAD, ['8'] = C_PAYLOAD, ['9'] = C_PAYLOAD,
	['a'] = C_PAYLOAD, ['b'] = C_PAYLOAD, ['c'] = C_PAYLOAD, ['d'] = C_PAYLOAD, ['e'] = C_PAYLOAD,
	['f'] = C_PAYLOAD, ['A'] = C_PAYLOAD, ['B'] = C_PAYLOAD, ['C'] = C_PAYLOAD, ['D'] = C_PAYLOAD,
	['E'] = C_PAYLOAD, ['F'] = C_PAYLOAD, ['.'] = C_PAYLOAD,
};

/* Value of a hex digit; NOT_HEX (high bit set) for any other byte, so a pair is checked with
 * one OR. */
#define NOT_HEX 0x80
#define X16(v) v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v
static const uint8_t hex_value[256] = {
	X16(NOT_HEX), X16(NOT_HEX), X16(NOT_HEX),
	0, 1, 2, 3, 4, 5, 6, 7, 8, 9, NOT_HEX, NOT_HEX, NOT_HEX, NOT_HEX, NOT_HEX, NOT_HEX,
	NOT_HEX, 10, 11, 12, 13, 14, 15, NOT_HEX, NOT_HEX, NOT_HEX, NOT_HEX, NOT_HEX, NOT_HEX, NOT_HEX, NOT_HEX, NOT_HEX,
	X16(NOT_HEX),
	NOT_HEX, 10, 11, 12, 13, 14, 15, NOT_HEX, NOT_HEX, NOT_HEX, NOT_HEX, NOT_HEX, NOT_HEX, NOT_HEX, NOT_HEX, NOT_HEX,
	X16(NOT_HEX), X16(NOT_HEX), X16(NOT_HEX), X16(NOT_HEX), X16(NOT_HEX), X16(NOT_HEX), X16(NOT_HEX),
	X16(NOT_HEX), X16(NOT_HEX),
};
#undef X16

static inline int is_ws(uint8_t c)
{
	return char_class[c] & C_WS;
}

static inline int is_term(uint8_t c)
{
	return char_class[c] & C_TERM;
}

static inline int is_digit(uint8_t c)
{
	return (unsigned)(c - '0') < 10;
}

static const int64_t POW10[10] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000, 1000000000};

enum { LINE_BLANK = 0, LINE_OK = 1, LINE_BAD = -1 };

struct line {
	int64_t t_ns;
	const uint8_t *channel;
	size_t channel_len;
	uint64_t channel_key; /* the name's first 8 bytes, little-endian, zero-padded */
	uint32_t can_id;
	uint16_t flags;
	uint8_t dlc;
};

/* The byte at q; past `end` a bounded parse sees a line terminator. An unbounded parse reads
 * the text directly: the caller has made sure a terminator ends the line (parse_text). */
ALWAYS_INLINE uint8_t byte_at(const uint8_t *q, const uint8_t *end, const int bounded)
{
	return bounded && q >= end ? (uint8_t)'\n' : *q;
}
#define AT(q) byte_at((q), end, bounded)

/*
 * Parse the line starting at s; return a pointer to its terminator (or to end) and the
 * outcome in *rc. The payload goes to data (64 bytes, zero past the payload when LINE_OK),
 * which the caller may reuse when the line is not LINE_OK. `bounded` is a constant at each
 * call site, so the compiler makes one copy of this function per case.
 */
ALWAYS_INLINE const uint8_t *parse_line(const uint8_t *s, const uint8_t *end, const int bounded, struct line *out,
					uint8_t *data, int *rc)
{
	uint8_t c;
	while (is_ws(c = AT(s)))
		s++;
	if (is_term(c)) {
		*rc = LINE_BLANK;
		return s;
	}
	if (c != '(')
		goto bad;
	/* seconds: digit+ */
	const uint8_t *d0 = ++s;
	int64_t sec = 0;
	int too_big = 0;
	while (is_digit(c = AT(s))) {
		if (!too_big) {
			sec = sec * 10 + (c - '0');
			too_big = sec > SEC_MAX;
		}
		s++;
	}
	if (s == d0 || c != '.')
		goto bad;
	/* fraction: digit+, the first 9 kept, right-padded with zeros */
	d0 = ++s;
	int64_t frac = 0;
	while (is_digit(c = AT(s))) {
		if (s - d0 < 9)
			frac = frac * 10 + (c - '0');
		s++;
	}
	if (s == d0 || c != ')')
		goto bad;
	if (s - d0 < 9)
		frac *= POW10[9 - (s - d0)];
	if (too_big || (sec == SEC_MAX && frac > FRAC_AT_SEC_MAX))
		goto bad;
	/* ws+ CHANNEL ws+ */
	if (!is_ws(c = AT(++s)))
		goto bad;
	while (is_ws(c = AT(s)))
		s++;
	const uint8_t *ch = s;
	uint64_t key = 0;
	while (!(char_class[c] & (C_WS | C_TERM))) {
		if (s - ch < 8)
			key |= (uint64_t)c << (8 * (s - ch));
		c = AT(++s);
	}
	if (s == ch || !is_ws(c))
		goto bad;
	out->channel = ch;
	out->channel_len = (size_t)(s - ch);
	out->channel_key = key;
	while (is_ws(c = AT(s)))
		s++;
	/* id: hex{1,8} '#' */
	const uint8_t *id0 = s;
	uint32_t id = 0;
	uint8_t v;
	while (!((v = hex_value[c]) & NOT_HEX)) {
		if (s - id0 == 8)
			goto bad;
		id = (id << 4) | v;
		c = AT(++s);
	}
	if (s == id0 || c != '#')
		goto bad;
	uint16_t flags = s - id0 > 3 ? SHADOWD_CANDUMP_FLAG_EXTENDED : 0;
	c = AT(++s);
	if (c == '#') {
		flags |= SHADOWD_CANDUMP_FLAG_FD;
		c = AT(++s);
		if (char_class[c] & C_PAYLOAD)
			c = AT(++s); /* the CAN-FD flags nibble (or whatever stands there) is not data */
	}
	/* payload: [hex .]* with an even number of hex digits, at most 64 bytes; hex pairs first
	 * (the usual payload), then digit by digit once a '.' or an odd digit shows up */
	size_t n = 0;
	for (;;) {
		uint8_t hi = hex_value[c], lo;
		if (hi & NOT_HEX)
			break;
		lo = hex_value[AT(s + 1)];
		if (lo & NOT_HEX)
			break;
		if (n == DATA_BYTES)
			goto bad;
		data[n++] = (uint8_t)(hi << 4 | lo);
		s += 2;
		c = AT(s);
	}
	if (char_class[c] & C_PAYLOAD) {
		size_t nhex = 2 * n;
		for (; char_class[c] & C_PAYLOAD; c = AT(++s)) {
			if (c == '.')
				continue;
			if (nhex == 2 * DATA_BYTES)
				goto bad;
			v = hex_value[c];
			data[nhex / 2] = nhex % 2 ? (uint8_t)(data[nhex / 2] | v) : (uint8_t)(v << 4);
			nhex++;
		}
		if (nhex % 2)
			goto bad;
		n = nhex / 2;
	}
	/* ws* to the end of the line */
	while (is_ws(c))
		c = AT(++s);
	if (!is_term(c))
		goto bad;
	memset(data + n, 0, DATA_BYTES - n);
	out->t_ns = sec * NS_PER_S + frac;
	out->can_id = id;
	out->flags = flags;
	out->dlc = (uint8_t)n;
	*rc = LINE_OK;
	return s;
bad:
	while (!is_term(AT(s)))
		s++;
	*rc = LINE_BAD;
	return s;
}

#undef AT

/* The channel table: info's names plus, for names of up to 8 bytes, their first-8-byte keys
 * and a hash table over (key, length) (a log's few channels come interleaved: one probe and
 * no compare loop whose exit depends on which channel it is). */
#define SLOTS 128 /* > 2 * SHADOWD_CANDUMP_MAX_CHANNELS: probing always finds an empty slot */
struct channels {
	struct shadowd_candump_info *info;
	uint64_t key[SHADOWD_CANDUMP_MAX_CHANNELS];
	uint8_t slot[SLOTS]; /* channel index + 1, 0 = empty */
};

static inline unsigned slot_of(uint64_t key, size_t len)
{
	return (unsigned)(((key ^ len) * 0x9E3779B97F4A7C15ULL) >> 57); /* Fibonacci hashing, 7 bits */
}

/* Index of the line's channel in the table, adding it when new; -E2BIG when it cannot. */
static inline int channel_index(struct channels *t, const struct line *ln)
{
	struct shadowd_candump_info *info = t->info;
	const uint8_t *name = ln->channel;
	size_t len = ln->channel_len;
	while (len > 0 && name[len - 1] == '\0')
		len--; /* trailing NULs are not part of a name (as numpy's bytes arrays hold names) */
	unsigned h = 0;
	if (len <= 8) { /* NUL bytes add nothing to the key: it is the stripped name's key */
		for (h = slot_of(ln->channel_key, len); t->slot[h]; h = (h + 1) % SLOTS) {
			int i = t->slot[h] - 1;
			if (t->key[i] == ln->channel_key && info->channel_len[i] == len)
				return i;
		}
	} else {
		for (uint32_t i = 0; i < info->n_channels; i++)
			if (info->channel_len[i] == len && memcmp(info->channel[i], name, len) == 0)
				return (int)i;
	}
	if (len > SHADOWD_CANDUMP_MAX_CHANNEL_LEN || info->n_channels >= SHADOWD_CANDUMP_MAX_CHANNELS)
		return -E2BIG;
	uint32_t i = info->n_channels++;
	memcpy(info->channel[i], name, len);
	info->channel[i][len] = '\0';
	info->channel_len[i] = (uint8_t)len;
	t->key[i] = ln->channel_key;
	if (len <= 8)
		t->slot[h] = (uint8_t)(i + 1);
	return (int)i;
}

/* Where accepted lines go: the columns of shadowd_candump_parse, or records. */
struct sink {
	size_t max_rows;
	int64_t *t_ns;
	uint16_t *channel;
	uint32_t *can_id;
	uint8_t *dlc;
	uint16_t *flags;
	uint8_t *data;
	size_t data_stride;
	struct shadowd_can_raw *rec;
};

/* The parse loop of both entry points; `records` is a constant at each call site. */
ALWAYS_INLINE int64_t parse_text(const uint8_t *text, size_t len, const struct sink *out,
				 struct shadowd_candump_info *info, const int records)
{
	memset(info, 0, sizeof(*info));
	struct channels table = {.info = info};
	const uint8_t *p = text, *end = text + len;
	/* lines that start before `tail` end in a terminator inside the text: they are parsed
	 * without bounds checks; the last line, when unterminated, with them */
	const uint8_t *tail = end;
	while (tail > text && !is_term(tail[-1]))
		tail--;
	size_t rows = 0;
	struct line ln;
	uint8_t scratch[DATA_BYTES]; /* the payload of a column row, or of any row once full */
	while (p < end) {
		uint8_t *data = records && rows < out->max_rows ? out->rec[rows].data : scratch;
		int rc;
		const uint8_t *eol = p < tail ? parse_line(p, end, 0, &ln, data, &rc) : parse_line(p, end, 1, &ln, data, &rc);
		p = eol + (eol < end); /* \r ends a line too; the rest up to \n is parsed as the next line */
		if (rc == LINE_BLANK)
			continue;
		if (rc == LINE_BAD) {
			info->malformed_lines++;
			continue;
		}
		if (rows >= out->max_rows)
			return -ENOSPC;
		if (!records && ln.dlc > out->data_stride)
			return -EMSGSIZE;
		int ci = channel_index(&table, &ln);
		if (ci < 0)
			return ci;
		if (records) {
			struct shadowd_can_raw *r = &out->rec[rows];
			r->t_ns = ln.t_ns;
			r->bus = (uint8_t)ci;
			r->dlc = ln.dlc;
			r->flags = ln.flags;
			r->can_id = ln.can_id;
		} else {
			out->t_ns[rows] = ln.t_ns;
			out->channel[rows] = (uint16_t)ci;
			out->can_id[rows] = ln.can_id;
			out->dlc[rows] = ln.dlc;
			out->flags[rows] = ln.flags;
			memcpy(out->data + rows * out->data_stride, data, out->data_stride);
		}
		if (ln.dlc > info->max_dlc)
			info->max_dlc = ln.dlc;
		rows++;
	}
	return (int64_t)rows;
}

int64_t shadowd_candump_parse(const uint8_t *text, size_t len, size_t max_rows, int64_t *t_ns,
			      uint16_t *channel, uint32_t *can_id, uint8_t *dlc, uint16_t *flags,
			      uint8_t *data, size_t data_stride, struct shadowd_candump_info *info)
{
	if ((text == NULL && len > 0) || !t_ns || !channel || !can_id || !dlc || !flags || !data || !info ||
	    data_stride < 1 || data_stride > SHADOWD_CANDUMP_DATA_BYTES)
		return -EINVAL;
	const struct sink out = {.max_rows = max_rows, .t_ns = t_ns, .channel = channel, .can_id = can_id,
				 .dlc = dlc, .flags = flags, .data = data, .data_stride = data_stride};
	return parse_text(text, len, &out, info, 0);
}

int64_t shadowd_candump_parse_records(const uint8_t *text, size_t len, size_t max_rows,
				      struct shadowd_can_raw *records, struct shadowd_candump_info *info)
{
	if ((text == NULL && len > 0) || !records || !info)
		return -EINVAL;
	const struct sink out = {.max_rows = max_rows, .rec = records};
	return parse_text(text, len, &out, info, 1);
}
