/* Option parsing shared by the C benchmark programs. */
#ifndef ACRN_BENCH_ARGS_H
#define ACRN_BENCH_ARGS_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* The number given to option `opt` (decimal, 0x hex or 0 octal); anything else is a usage
 * error of program `prog`: a one-line message and exit status 2. */
static inline uint64_t parse_u64(const char *prog, const char *opt, const char *v)
{
	char *end;
	errno = 0;
	unsigned long long x = strtoull(v ? v : "", &end, 0);
	if (!v || errno || *end || end == v) {
		fprintf(stderr, "%s: %s needs a number\n", prog, opt);
		exit(2);
	}
	return x;
}

#endif
