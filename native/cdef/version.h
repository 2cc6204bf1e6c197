unsigned wv_version(void);
