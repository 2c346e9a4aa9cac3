/* Test probe: allocate and touch MEGABYTES of memory, then print "allocated". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
	size_t megabytes = argc > 1 ? strtoul(argv[1], NULL, 10) : 100;

	for (size_t i = 0; i < megabytes; i++) {
		char *chunk = malloc(1 << 20);

		if (chunk == NULL) {
			puts("malloc failed");
			return 2;
		}
		memset(chunk, 0x5a, 1 << 20);
	}
	puts("allocated");
	return 0;
}
