/* The candump parser: clean lines become rows (time, channel, id, payload, flags), blank
 * lines are skipped, every malformed line is counted and skipped without stopping the parse,
 * and the limits (max_rows, data_stride, channel table) return their documented errors. */
#include "helpers.h"
#include "shadowd/candump.h"

#define ROWS 16

struct cols {
	int64_t t_ns[ROWS];
	uint16_t channel[ROWS];
	uint32_t can_id[ROWS];
	uint8_t dlc[ROWS];
	uint16_t flags[ROWS];
	uint8_t data[ROWS * SHADOWD_CANDUMP_DATA_BYTES];
	struct shadowd_candump_info info;
};

static int64_t parse(struct cols *c, const char *text, size_t max_rows, size_t stride)
{
	memset(c, 0xAB, sizeof(*c)); /* garbage in: the parser must write every field it returns */
	return shadowd_candump_parse((const uint8_t *)text, strlen(text), max_rows, c->t_ns, c->channel,
				     c->can_id, c->dlc, c->flags, c->data, stride, &c->info);
}

static void clean_lines(void)
{
	static struct cols c;
	const char *text = "(46408.584930) can0 260#08FFFB0000001884\n"
			   "\n"
			   "  (46408.5) can128 18FF00AA#\t\n"
			   "(1.1234567891) vcan1 1#0.a\r\n"
			   "(2.0) can0 7FF##5112233";
	CHECK_EQ(parse(&c, text, ROWS, 8), 4);
	CHECK_EQ(c.info.malformed_lines, 0);
	CHECK_EQ(c.info.n_channels, 3);
	CHECK(memcmp(c.info.channel[1], "can128", 7) == 0);
	CHECK_EQ(c.t_ns[0], 46408584930000LL);
	CHECK_EQ(c.t_ns[1], 46408500000000LL);
	CHECK_EQ(c.t_ns[2], 1123456789LL); /* fraction digits past 9 are dropped */
	CHECK_EQ(c.channel[0], 0);
	CHECK_EQ(c.channel[1], 1);
	CHECK_EQ(c.channel[2], 2);
	CHECK_EQ(c.channel[3], 0);
	CHECK_EQ(c.can_id[0], 0x260);
	CHECK_EQ(c.can_id[1], 0x18FF00AA);
	CHECK_EQ(c.flags[0], 0);
	CHECK_EQ(c.flags[1], SHADOWD_CANDUMP_FLAG_EXTENDED);
	CHECK_EQ(c.flags[3], SHADOWD_CANDUMP_FLAG_FD);
	CHECK_EQ(c.dlc[0], 8);
	CHECK_EQ(c.dlc[1], 0);
	CHECK_EQ(c.dlc[2], 1);
	CHECK_EQ(c.dlc[3], 3); /* the FD flags nibble '5' is not data */
	const uint8_t row0[8] = {0x08, 0xFF, 0xFB, 0x00, 0x00, 0x00, 0x18, 0x84};
	CHECK(memcmp(c.data, row0, 8) == 0);
	CHECK_EQ(c.data[8], 0); /* empty payload: zeros */
	CHECK_EQ(c.data[16], 0x0A); /* '.' is a separator */
	CHECK_EQ(c.data[17], 0);
	const uint8_t row3[8] = {0x11, 0x22, 0x33, 0, 0, 0, 0, 0};
	CHECK(memcmp(c.data + 24, row3, 8) == 0);
	CHECK_EQ(c.info.max_dlc, 8);
}

static void malformed_lines(void)
{
	static struct cols c;
	const char *bad[] = {
		"garbage",
		"(1.0 can0 123#00",            /* no ')' */
		"(1.) can0 123#00",            /* no fraction digits */
		"(.5) can0 123#00",            /* no second digits */
		"(1.0)can0 123#00",            /* no space after ')' */
		"(1.0) can0",                  /* no id */
		"(1.0) can0 123",              /* no '#' */
		"(1.0) can0 #00",              /* empty id */
		"(1.0) can0 123456789#00",     /* 9 id digits */
		"(1.0) can0 12G#00",           /* not hex */
		"(1.0) can0 123#0",            /* odd payload */
		"(1.0) can0 123#00 11",        /* text after the payload */
		"(1.0) can0 123#R",            /* remote frame */
		"(99999999999999999999.0) can0 123#00", /* does not fit int64 ns */
	};
	char text[4096] = "(0.5) can0 1#01\n";
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		strcat(text, bad[i]);
		strcat(text, "\n");
	}
	strcat(text, "(0.75) can1 2#0203\n");
	CHECK_EQ(parse(&c, text, ROWS, 8), 2);
	CHECK_EQ(c.info.malformed_lines, sizeof(bad) / sizeof(bad[0]));
	CHECK_EQ(c.t_ns[1], 750000000);
	CHECK_EQ(c.can_id[1], 2);
	CHECK_EQ(c.data[8], 2);
	CHECK_EQ(c.data[9], 3);
	/* a payload over 64 bytes is malformed, not a crash */
	char big[400] = "(1.0) can0 123##0";
	for (int i = 0; i < 65; i++)
		strcat(big, "AB");
	CHECK_EQ(parse(&c, big, ROWS, 64), 0);
	CHECK_EQ(c.info.malformed_lines, 1);
}

static void limits(void)
{
	static struct cols c;
	CHECK_EQ(parse(&c, "(1.0) a 1#00\n(2.0) a 1#00\n", 1, 8), -ENOSPC);
	CHECK_EQ(parse(&c, "(1.0) a 1##0112233445566778899\n", ROWS, 8), -EMSGSIZE);
	CHECK_EQ(parse(&c, "(1.0) a 1##0112233445566778899\n", ROWS, 64), 1);
	CHECK_EQ(c.dlc[0], 9);
	CHECK_EQ(parse(&c, "(1.0) a 1#00\n", ROWS, 0), -EINVAL);
	CHECK_EQ(shadowd_candump_parse(NULL, 5, ROWS, c.t_ns, c.channel, c.can_id, c.dlc, c.flags, c.data, 8,
				       &c.info), -EINVAL);
	CHECK_EQ(parse(&c, "", ROWS, 8), 0);
	/* 65 distinct channels: the caller's general parser must take the log */
	static char many[65 * 32];
	many[0] = '\0';
	for (int i = 0; i < 65; i++)
		sprintf(many + strlen(many), "(1.0) ch%d 1#00\n", i);
	static struct cols big;
	memset(&big, 0, sizeof(big));
	int64_t t[80];
	uint16_t ch[80], fl[80];
	uint32_t id[80];
	uint8_t dl[80], data[80 * 8];
	CHECK_EQ(shadowd_candump_parse((const uint8_t *)many, strlen(many), 80, t, ch, id, dl, fl, data, 8, &big.info),
		 -E2BIG);
	CHECK_EQ(shadowd_candump_abi_version(), SHADOWD_CANDUMP_ABI_VERSION);
}

int main(void)
{
	clean_lines();
	malformed_lines();
	limits();
	return T_PASS;
}
