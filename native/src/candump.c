/*
 * candump.c: candump -L text -> columns (see include/shadowd/candump.h for the grammar,
 * the outputs and the return codes). One pass over the text, no allocation; a line is fully
 * validated before anything of it is written, so a malformed line leaves no trace but its
 * count. Replay spends most of its decode time here when this is done in Python.
 */
#include "shadowd/candump.h"

#include <errno.h>
#include <string.h>

#define NS_PER_S 1000000000LL
/* t_ns = sec * 1e9 + frac must fit int64: INT64_MAX = 9223372036 s + 854775807 ns */
#define SEC_MAX 9223372036LL
#define FRAC_AT_SEC_MAX 854775807LL

int shadowd_candump_abi_version(void)
{
	return SHADOWD_CANDUMP_ABI_VERSION;
}

/* Character classes of the grammar, one table lookup per byte. */
#define C_WS 1    /* space \t \v \f */
#define C_DIGIT 2
#define C_HEX 4
#define C_DOT 8
#define C_TERM 16 /* \n \r */

static const uint8_t char_class[256] = {
	[' '] = C_WS, ['\t'] = C_WS, ['\v'] = C_WS, ['\f'] = C_WS, ['\n'] = C_TERM, ['\r'] = C_TERM,
	['0'] = C_DIGIT | C_HEX, ['1'] = C_DIGIT | C_HEX, ['2'] = C_DIGIT | C_HEX, ['3'] = C_DIGIT | C_HEX,
	['4'] = C_DIGIT | C_HEX, ['5'] = C_DIGIT | C_HEX, ['6'] = C_DIGIT | C_HEX, ['7'] = C_DIGIT | C_HEX,
	['8'] = C_DIGIT | C_HEX, ['9'] = C_DIGIT | C_HEX,
	['a'] = C_HEX, ['b'] = C_HEX, ['c'] = C_HEX, ['d'] = C_HEX, ['e'] = C_HEX, ['f'] = C_HEX,
	['A'] = C_HEX, ['B'] = C_HEX, ['C'] = C_HEX, ['D'] = C_HEX, ['E'] = C_HEX, ['F'] = C_HEX,
	['.'] = C_DOT,
};

static const uint8_t hex_nibble[256] = {
	['1'] = 1, ['2'] = 2, ['3'] = 3, ['4'] = 4, ['5'] = 5, ['6'] = 6, ['7'] = 7, ['8'] = 8, ['9'] = 9,
	['a'] = 10, ['b'] = 11, ['c'] = 12, ['d'] = 13, ['e'] = 14, ['f'] = 15,
	['A'] = 10, ['B'] = 11, ['C'] = 12, ['D'] = 13, ['E'] = 14, ['F'] = 15,
};

static inline int is_ws(uint8_t c)
{
	return char_class[c] & C_WS;
}

static inline int is_digit(uint8_t c)
{
	return char_class[c] & C_DIGIT;
}

static inline int is_hex(uint8_t c)
{
	return char_class[c] & C_HEX;
}

enum { LINE_BLANK = 0, LINE_OK = 1, LINE_BAD = -1 };

struct line {
	int64_t t_ns;
	const uint8_t *channel;
	size_t channel_len;
	uint32_t can_id;
	uint16_t flags;
	uint8_t dlc;
};

/* Parse [s, e) (no line terminator inside); the payload goes to data (stride bytes, zero
 * past the payload), which the caller may reuse when the line is not LINE_OK. */
static int parse_line(const uint8_t *s, const uint8_t *e, struct line *out, uint8_t *data, size_t stride)
{
	while (s < e && is_ws(*s))
		s++;
	if (s == e)
		return LINE_BLANK;
	if (*s++ != '(')
		return LINE_BAD;
	/* seconds: digit+ */
	int64_t sec = 0;
	int too_big = 0;
	const uint8_t *d0 = s;
	while (s < e && is_digit(*s)) {
		if (!too_big) {
			sec = sec * 10 + (*s - '0');
			too_big = sec > SEC_MAX;
		}
		s++;
	}
	if (s == d0 || s == e || *s++ != '.')
		return LINE_BAD;
	/* fraction: digit+, the first 9 kept, right-padded with zeros */
	int64_t frac = 0;
	int nfrac = 0;
	d0 = s;
	while (s < e && is_digit(*s)) {
		if (nfrac < 9) {
			frac = frac * 10 + (*s - '0');
			nfrac++;
		}
		s++;
	}
	if (s == d0 || s == e || *s++ != ')')
		return LINE_BAD;
	for (; nfrac < 9; nfrac++)
		frac *= 10;
	if (too_big || (sec == SEC_MAX && frac > FRAC_AT_SEC_MAX))
		return LINE_BAD;
	/* ws+ CHANNEL ws+ */
	if (s == e || !is_ws(*s))
		return LINE_BAD;
	while (s < e && is_ws(*s))
		s++;
	const uint8_t *ch = s;
	while (s < e && !is_ws(*s))
		s++;
	if (s == ch || s == e)
		return LINE_BAD;
	size_t ch_len = (size_t)(s - ch);
	while (s < e && is_ws(*s))
		s++;
	/* id: hex{1,8} '#' */
	uint32_t id = 0;
	int nid = 0;
	while (s < e && is_hex(*s)) {
		if (++nid > 8)
			return LINE_BAD;
		id = (id << 4) | hex_nibble[*s];
		s++;
	}
	if (nid == 0 || s == e || *s++ != '#')
		return LINE_BAD;
	uint16_t flags = nid > 3 ? SHADOWD_CANDUMP_FLAG_EXTENDED : 0;
	if (s < e && *s == '#') {
		flags |= SHADOWD_CANDUMP_FLAG_FD;
		s++;
	}
	/* payload: [hex .]* then ws* to the end */
	const uint8_t *p0 = s;
	int dots = 0;
	while (s < e && (char_class[*s] & (C_HEX | C_DOT))) {
		dots |= *s == '.';
		s++;
	}
	const uint8_t *p1 = s;
	while (s < e && is_ws(*s))
		s++;
	if (s != e)
		return LINE_BAD;
	if ((flags & SHADOWD_CANDUMP_FLAG_FD) && p0 < p1)
		p0++; /* the CAN-FD flags nibble is not data */
	memset(data, 0, stride);
	size_t nhex = 0;
	if (!dots) { /* the usual payload: hex pairs, two digits a byte */
		nhex = (size_t)(p1 - p0);
		if (nhex % 2 || nhex > 2 * SHADOWD_CANDUMP_DATA_BYTES)
			return LINE_BAD;
		size_t n = nhex / 2 < stride ? nhex / 2 : stride;
		for (size_t i = 0; i < n; i++)
			data[i] = (uint8_t)(hex_nibble[p0[2 * i]] << 4 | hex_nibble[p0[2 * i + 1]]);
		p0 = p1; /* nothing left for the general loop */
	}
	for (const uint8_t *q = p0; q < p1; q++) {
		if (*q == '.')
			continue;
		if (nhex >= 2 * SHADOWD_CANDUMP_DATA_BYTES)
			return LINE_BAD;
		if (nhex < 2 * stride)
			data[nhex / 2] = (uint8_t)(data[nhex / 2] | (nhex % 2 ? hex_nibble[*q] : hex_nibble[*q] << 4));
		nhex++;
	}
	if (nhex % 2)
		return LINE_BAD;
	out->t_ns = sec * NS_PER_S + frac;
	out->channel = ch;
	out->channel_len = ch_len;
	out->can_id = id;
	out->flags = flags;
	out->dlc = (uint8_t)(nhex / 2);
	return LINE_OK;
}

/* Index of the channel name in info's table, adding it when new; -E2BIG when it cannot. */
static inline int same_name(const char *known, const uint8_t *name, size_t len)
{
	for (size_t i = 0; i < len; i++) /* names are a few bytes: cheaper than a memcmp call */
		if ((uint8_t)known[i] != name[i])
			return 0;
	return 1;
}

static int channel_index(struct shadowd_candump_info *info, const uint8_t *name, size_t len, int *last)
{
	while (len > 0 && name[len - 1] == '\0')
		len--; /* trailing NULs are not part of a name (as numpy's bytes arrays hold names) */
	if (*last >= 0 && info->channel_len[*last] == len && same_name(info->channel[*last], name, len))
		return *last;
	for (uint32_t i = 0; i < info->n_channels; i++) {
		if (info->channel_len[i] == len && memcmp(info->channel[i], name, len) == 0)
			return *last = (int)i;
	}
	if (len > SHADOWD_CANDUMP_MAX_CHANNEL_LEN || info->n_channels >= SHADOWD_CANDUMP_MAX_CHANNELS)
		return -E2BIG;
	uint32_t i = info->n_channels++;
	memcpy(info->channel[i], name, len);
	info->channel[i][len] = '\0';
	info->channel_len[i] = (uint8_t)len;
	return *last = (int)i;
}

int64_t shadowd_candump_parse(const uint8_t *text, size_t len, size_t max_rows, int64_t *t_ns,
			      uint16_t *channel, uint32_t *can_id, uint8_t *dlc, uint16_t *flags,
			      uint8_t *data, size_t data_stride, struct shadowd_candump_info *info)
{
	if ((text == NULL && len > 0) || !t_ns || !channel || !can_id || !dlc || !flags || !data || !info ||
	    data_stride < 1 || data_stride > SHADOWD_CANDUMP_DATA_BYTES)
		return -EINVAL;
	memset(info, 0, sizeof(*info));
	const uint8_t *p = text, *end = text + len;
	size_t rows = 0;
	int last = -1;
	struct line ln;
	uint8_t spare[SHADOWD_CANDUMP_DATA_BYTES]; /* payload scratch once the columns are full */
	while (p < end) {
		const uint8_t *eol = memchr(p, '\n', (size_t)(end - p));
		if (eol == NULL)
			eol = end;
		const uint8_t *cr = memchr(p, '\r', (size_t)(eol - p));
		if (cr != NULL)
			eol = cr; /* \r ends a line too; the rest up to \n is parsed as the next line */
		uint8_t *row_data = rows < max_rows ? data + rows * data_stride : spare;
		int rc = parse_line(p, eol, &ln, row_data, data_stride);
		p = eol + 1;
		if (rc == LINE_BLANK)
			continue;
		if (rc == LINE_BAD) {
			info->malformed_lines++;
			continue;
		}
		if (rows >= max_rows)
			return -ENOSPC;
		if (ln.dlc > data_stride)
			return -EMSGSIZE;
		int ci = channel_index(info, ln.channel, ln.channel_len, &last);
		if (ci < 0)
			return ci;
		t_ns[rows] = ln.t_ns;
		channel[rows] = (uint16_t)ci;
		can_id[rows] = ln.can_id;
		dlc[rows] = ln.dlc;
		flags[rows] = ln.flags;
		if (ln.dlc > info->max_dlc)
			info->max_dlc = ln.dlc;
		rows++;
	}
	return (int64_t)rows;
}
