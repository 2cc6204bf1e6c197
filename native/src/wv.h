/* weightvault native library: the whole public surface in one header.  The cffi
 * glue includes only this file, so every declaration in native/cdef/ must be
 * reachable from here; C modules include wv_base.h and their own headers. */
#ifndef WV_H
#define WV_H
#include "wv_base.h"
#include "frame.h"
#include "planes.h"
#include "cast.h"
#include "rans.h"
#include "ctx.h"
#include "mag.h"
#include "pcodec.h"
#include "ckpt.h"
#include "cdc.h"
#endif
