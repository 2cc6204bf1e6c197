/* weightvault native library: public declarations shared by the C modules. */
#ifndef WV_H
#define WV_H

#include <stddef.h>
#include <stdint.h>

#define WV_VERSION_MAJOR 0
#define WV_VERSION_MINOR 1

unsigned wv_version(void);

#endif
