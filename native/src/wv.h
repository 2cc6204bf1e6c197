/* weightvault native library: the whole public surface in one header, one header per
 * C module.  native/build_native.py derives Python's cffi declarations from this file
 * (preprocessed), so what is declared here is what Python can call; C modules
 * include only the headers they use. */
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
#include "codec.h"
#include "batch.h"
#include "ckpt.h"
#include "cdc.h"
#endif
