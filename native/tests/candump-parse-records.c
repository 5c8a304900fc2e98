/* The candump parser's record output (shadowd_candump_parse_records) gives the rows, channels,
 * info and errors of its column output (shadowd_candump_parse, stride 64), as CAN_RAW records:
 * bus = the channel index, data zero past dlc, on clean, blank and malformed lines, CAN-FD,
 * '.'-separated payloads, \r and \r\n endings, a last line without its terminator, many
 * interleaved channels, generated lines, and at the limits. A line parses the same wherever it
 * stands (inside the text, where it is read up to its terminator, or last and unterminated,
 * where every read is bounds-checked). */
#include "helpers.h"
#include "shadowd/candump.h"

#include <stddef.h>

#define ROWS 256
#define D SHADOWD_CANDUMP_DATA_BYTES

/* The column output (stride 64), and the records with their info */
static int64_t t_ns[ROWS];
static uint16_t channel[ROWS], flags[ROWS];
static uint32_t can_id[ROWS];
static uint8_t dlc[ROWS], data[ROWS * D];
static struct shadowd_candump_info info, rinfo;
static struct shadowd_can_raw rec[ROWS];

/* Parse text both ways, over garbage (0xAB), and check that they agree row by row. */
static int64_t both(const char *text, size_t len, size_t max_rows)
{
	memset(data, 0xAB, sizeof(data));
	memset(rec, 0xAB, sizeof(rec));
	memset(&rinfo, 0xAB, sizeof(rinfo));
	int64_t n = shadowd_candump_parse((const uint8_t *)text, len, max_rows, t_ns, channel, can_id, dlc, flags,
					  data, D, &info);
	int64_t m = shadowd_candump_parse_records((const uint8_t *)text, len, max_rows, rec, &rinfo);
	CHECK_EQ(m, n);
	if (n < 0)
		return n;
	CHECK(memcmp(&rinfo, &info, sizeof(rinfo)) == 0);
	for (int64_t i = 0; i < n; i++) {
		CHECK_EQ(rec[i].t_ns, t_ns[i]);
		CHECK_EQ(rec[i].bus, channel[i]);
		CHECK_EQ(rec[i].dlc, dlc[i]);
		CHECK_EQ(rec[i].flags, flags[i]);
		CHECK_EQ(rec[i].can_id, can_id[i]);
		CHECK(memcmp(rec[i].data, data + i * D, D) == 0);
		for (int j = rec[i].dlc; j < D; j++)
			CHECK_EQ(rec[i].data[j], 0);
	}
	return n;
}

static int64_t both_str(const char *text)
{
	return both(text, strlen(text), ROWS);
}

static void layout(void)
{
	/* shadowd/core/signals.py CAN_RAW_DTYPE: t_ns i8, bus u1, dlc u1, flags u2, can_id u4, data u1[64] */
	CHECK_EQ(sizeof(struct shadowd_can_raw), 80);
	CHECK_EQ(offsetof(struct shadowd_can_raw, t_ns), 0);
	CHECK_EQ(offsetof(struct shadowd_can_raw, bus), 8);
	CHECK_EQ(offsetof(struct shadowd_can_raw, dlc), 9);
	CHECK_EQ(offsetof(struct shadowd_can_raw, flags), 10);
	CHECK_EQ(offsetof(struct shadowd_can_raw, can_id), 12);
	CHECK_EQ(offsetof(struct shadowd_can_raw, data), 16);
}

static void mixed_lines(void)
{
	const char *text = "(46408.584930) can0 260#08FFFB0000001884\n"
			   "\n"
			   "  (46408.5) can128 18FF00AA#\t\n"
			   "garbage\r\n"
			   "(1.1234567891) vcan1 1#0.a\r"
			   "(2.0) can0 7FF##5112233\n"
			   "(2.0) can0 7FF#0112233\n" /* odd payload */
			   "(3.25)\tcan1\t\t123#.11.22.\v\f\n"
			   "(4.0) can0 1##0" "00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF"
			   "00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF\n"
			   "(5.0) can0 12345678#DEADBEEF";
	CHECK_EQ(both_str(text), 7);
	CHECK_EQ(rinfo.malformed_lines, 2);
	CHECK_EQ(rinfo.n_channels, 4);
	CHECK_EQ(rec[0].can_id, 0x260);
	CHECK_EQ(rec[0].bus, 0);
	CHECK_EQ(rec[1].bus, 1);
	CHECK_EQ(rec[2].bus, 2);
	CHECK_EQ(rec[2].data[0], 0x0A);
	CHECK_EQ(rec[3].flags, SHADOWD_CANDUMP_FLAG_FD);
	CHECK_EQ(rec[3].dlc, 3);
	CHECK_EQ(rec[4].t_ns, 3250000000LL);
	CHECK_EQ(rec[4].dlc, 2);
	CHECK_EQ(rec[5].dlc, 64); /* a full CAN-FD frame: no -EMSGSIZE for records */
	CHECK_EQ(rec[5].data[63], 0xFF);
	CHECK_EQ(rec[6].flags, SHADOWD_CANDUMP_FLAG_EXTENDED);
	CHECK_EQ(rec[6].can_id, 0x12345678);
	CHECK_EQ(rec[6].data[0], 0xDE);
	CHECK_EQ(rec[6].data[3], 0xEF);
	CHECK_EQ(rinfo.max_dlc, 64);
	/* the same lines without the last one's payload, then unterminated mid-field */
	const char *cut[] = {"(5.0) can0 12345678#", "(5.0) can0 12345678", "(5.0) can0 ", "(5.", "(", " "};
	for (size_t i = 0; i < sizeof(cut) / sizeof(cut[0]); i++)
		both_str(cut[i]);
}

/* A line gives the same row (or malformed count) last and unterminated as inside the text. */
static void line_alone_and_inside(const char *line)
{
	static char text[4096];
	static struct shadowd_can_raw first;
	size_t len = strlen(line);
	int64_t alone = both(line, len, ROWS);
	uint64_t bad = rinfo.malformed_lines;
	first = rec[0];
	for (int pad = 0; pad < 3; pad++) { /* then with a terminator and more lines after it */
		memcpy(text, line, len);
		strcpy(text + len, pad == 0 ? "\n" : pad == 1 ? "\r\n(1.0) x 1#00" : "\n(1.0) x 1#00\n\n\n\n\n\n\n\n\n\n\n\n");
		int64_t inside = both(text, strlen(text), ROWS);
		CHECK_EQ(inside - (pad > 0), alone);
		CHECK_EQ(rinfo.malformed_lines, bad);
		if (alone == 1)
			CHECK(memcmp(&rec[0], &first, sizeof(first)) == 0);
	}
}

static uint64_t rng_state = 0x853C49E6748FEA9BULL;

static unsigned rnd(unsigned n)
{
	rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
	return (unsigned)((rng_state >> 33) % n);
}

static void append(char *s, size_t *len, const char *piece, size_t n)
{
	memcpy(s + *len, piece, n);
	*len += n;
}

static void append_digits(char *s, size_t *len, unsigned n, const char *alphabet)
{
	for (unsigned i = 0; i < n; i++)
		s[(*len)++] = alphabet[rnd((unsigned)strlen(alphabet))];
}

/* A candump line, valid but for the occasional replaced, dropped or inserted character. */
static size_t gen_line(char *s)
{
	static const char *ws[] = {" ", "\t", "  ", " \v"};
	static const char *chans[] = {"can0", "can1", "vcan12", "x", "can128", "averyverylongchannel"};
	static const char noise[] = "()#. xZ9\0\v\f\r";
	size_t len = 0;
	if (rnd(8) == 0)
		append(s, &len, ws[rnd(4)], strlen(ws[0]));
	append(s, &len, "(", 1);
	append_digits(s, &len, 1 + rnd(12), "0123456789");
	append(s, &len, ".", 1);
	append_digits(s, &len, 1 + rnd(12), "0123456789");
	append(s, &len, ")", 1);
	const char *w = ws[rnd(4)];
	append(s, &len, w, strlen(w));
	const char *ch = chans[rnd(6)];
	append(s, &len, ch, strlen(ch));
	w = ws[rnd(4)];
	append(s, &len, w, strlen(w));
	append_digits(s, &len, 1 + rnd(9), "0123456789abcdefABCDEF");
	int fd = rnd(4) == 0;
	append(s, &len, fd ? "##" : "#", fd ? 2 : 1);
	if (fd)
		append_digits(s, &len, 1, "0123456789ABCDEF");
	unsigned bytes = rnd(fd ? 66 : 10);
	for (unsigned i = 0; i < bytes; i++) {
		append_digits(s, &len, 2, "0123456789abcdefABCDEF");
		if (rnd(16) == 0)
			append(s, &len, ".", 1);
	}
	if (rnd(4) == 0)
		append(s, &len, ws[rnd(4)], 1);
	if (rnd(4) == 0) { /* break it */
		size_t at = rnd((unsigned)len + 1);
		char x = noise[rnd(sizeof(noise) - 1)];
		switch (rnd(3)) {
		case 0:
			if (at < len)
				s[at] = x;
			break;
		case 1:
			if (at < len)
				memmove(s + at, s + at + 1, len-- - at - 1);
			break;
		default:
			memmove(s + at + 1, s + at, len - at);
			s[at] = x;
			len++;
		}
	}
	return len;
}

static void generated_lines(void)
{
	static char text[ROWS * 200];
	static const char *ends[] = {"\n", "\r\n", "\r"};
	for (int round = 0; round < 300; round++) {
		size_t len = 0;
		int lines = 1 + (int)rnd(60);
		for (int i = 0; i < lines; i++) {
			char line[256];
			size_t n = gen_line(line);
			memcpy(text + len, line, n);
			len += n;
			const char *e = ends[rnd(3)];
			if (i + 1 < lines || rnd(2))
				append(text, &len, e, strlen(e));
		}
		both(text, len, ROWS);
		both(text, len, rnd(4)); /* -ENOSPC alike */
	}
	for (int i = 0; i < 2000; i++) {
		char line[256];
		size_t n = gen_line(line);
		line[n] = '\0';
		if (memchr(line, '\0', n) == NULL && memchr(line, '\r', n) == NULL)
			line_alone_and_inside(line);
	}
}

/* 64 channels, names of 2 to 12 bytes (some with trailing NULs, which are not part of the
 * name; some alike but for their 8th or 9th byte), interleaved: every line finds its channel;
 * a 65th name is -E2BIG. */
static void many_channels(void)
{
	static char text[64 * 3 * 40];
	char names[64][16];
	size_t name_len[64];
	for (int i = 0; i < 64; i++) {
		if (i < 8) /* abcdefg0 .. abcdefg3, abcdefgh0 .. abcdefgh3 */
			snprintf(names[i], sizeof(names[i]), "%s%d", i < 4 ? "abcdefg" : "abcdefgh", i % 4);
		else
			snprintf(names[i], sizeof(names[i]), "c%0*d", 1 + i % 11, i);
		name_len[i] = strlen(names[i]);
	}
	size_t len = 0;
	for (int round = 0; round < 3; round++) {
		for (int k = 0; k < 64; k++) {
			int i = round == 1 ? 63 - k : k;
			append(text, &len, "(1.5) ", 6);
			append(text, &len, names[i], name_len[i]);
			if (round == 2 && i % 3 == 0)
				append(text, &len, "\0\0", 1 + i % 2); /* the same name */
			append(text, &len, " 7#01\n", 6);
		}
	}
	CHECK_EQ(both(text, len, ROWS), 192);
	CHECK_EQ(rinfo.n_channels, 64);
	for (int k = 0; k < 64; k++) {
		CHECK_EQ(rec[k].bus, k);
		CHECK_EQ(rec[64 + k].bus, 63 - k);
		CHECK_EQ(rec[128 + k].bus, k);
		CHECK_EQ(rinfo.channel_len[k], name_len[k]);
		CHECK(memcmp(rinfo.channel[k], names[k], name_len[k] + 1) == 0);
	}
	append(text, &len, "(2.0) one-more 1#00\n", 20);
	CHECK_EQ(both(text, len, ROWS), -E2BIG);
}

static void limits(void)
{
	CHECK_EQ(both_str("(1.0) a 1#00\n(2.0) a 1#00\n"), 2);
	CHECK_EQ(both("(1.0) a 1#00\n(2.0) a 1#00\n", 26, 1), -ENOSPC);
	CHECK_EQ(both("", 0, 0), 0);
	CHECK_EQ(shadowd_candump_parse_records(NULL, 0, 1, rec, &info), 0);
	CHECK_EQ(shadowd_candump_parse_records(NULL, 5, 1, rec, &info), -EINVAL);
	CHECK_EQ(shadowd_candump_parse_records((const uint8_t *)"x", 1, 1, NULL, &info), -EINVAL);
	CHECK_EQ(shadowd_candump_parse_records((const uint8_t *)"x", 1, 1, rec, NULL), -EINVAL);
	CHECK_EQ(shadowd_candump_abi_version(), 2);
}

int main(void)
{
	layout();
	mixed_lines();
	generated_lines();
	many_channels();
	limits();
	return T_PASS;
}
