/* main.c - placeholder entry point; replaced by the CLI (see cli work). */
#include "config.h"
#include <stdio.h>
int main(void)
{
	puts(PACKAGE_STRING);
	return 0;
}
