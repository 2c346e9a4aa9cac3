/* Test probe: push one byte into fd 0's input with TIOCSTI; print "injected" or the error. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

int main(void)
{
	char byte = '#';

	if (ioctl(0, TIOCSTI, &byte) == 0) {
		puts("injected");
		return 0;
	}
	printf("%s\n", strerror(errno));
	return 1;
}
