#include "wv_base.h"

unsigned wv_version(void) { return (WV_VERSION_MAJOR << 16) | WV_VERSION_MINOR; }
