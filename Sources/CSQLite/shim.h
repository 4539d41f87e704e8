#ifndef CSQLITE_SHIM_H
#define CSQLITE_SHIM_H
// libsqlite3, loaded with dlopen only while the catalog is being read or written: a daemon at
// rest keeps none of its pages (about 1.2 MiB of RSS when linked for good). Only the SQLite
// module imports this.
#include <dlfcn.h>
#include <stddef.h>
#include <sqlite3.h>

struct csqlite_api {
    void *library;
    __typeof__(&sqlite3_open_v2) open_v2;
    __typeof__(&sqlite3_close) close;
    __typeof__(&sqlite3_errmsg) errmsg;
    __typeof__(&sqlite3_busy_timeout) busy_timeout;
    __typeof__(&sqlite3_exec) exec;
    __typeof__(&sqlite3_free) free;
    __typeof__(&sqlite3_prepare_v2) prepare_v2;
    __typeof__(&sqlite3_finalize) finalize;
    __typeof__(&sqlite3_reset) reset;
    __typeof__(&sqlite3_file_control) file_control;
    __typeof__(&sqlite3_clear_bindings) clear_bindings;
    __typeof__(&sqlite3_bind_int64) bind_int64;
    __typeof__(&sqlite3_bind_text) bind_text;
    __typeof__(&sqlite3_bind_null) bind_null;
    __typeof__(&sqlite3_step) step;
    __typeof__(&sqlite3_column_count) column_count;
    __typeof__(&sqlite3_column_type) column_type;
    __typeof__(&sqlite3_column_int64) column_int64;
    __typeof__(&sqlite3_column_text) column_text;
};

// Loads libsqlite3 and every function shadowcopy uses. Returns 0, or -1 with `api->library`
// NULL (dlerror() says why).
static inline int csqlite_load(struct csqlite_api *api) {
    api->library = dlopen("libsqlite3.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!api->library) return -1;
#define CSQLITE_SYM(field, name) \
    if (!(api->field = (__typeof__(api->field))dlsym(api->library, name))) { dlclose(api->library); api->library = NULL; return -1; }
    CSQLITE_SYM(open_v2, "sqlite3_open_v2")
    CSQLITE_SYM(close, "sqlite3_close")
    CSQLITE_SYM(errmsg, "sqlite3_errmsg")
    CSQLITE_SYM(busy_timeout, "sqlite3_busy_timeout")
    CSQLITE_SYM(exec, "sqlite3_exec")
    CSQLITE_SYM(free, "sqlite3_free")
    CSQLITE_SYM(prepare_v2, "sqlite3_prepare_v2")
    CSQLITE_SYM(finalize, "sqlite3_finalize")
    CSQLITE_SYM(reset, "sqlite3_reset")
    CSQLITE_SYM(file_control, "sqlite3_file_control")
    CSQLITE_SYM(clear_bindings, "sqlite3_clear_bindings")
    CSQLITE_SYM(bind_int64, "sqlite3_bind_int64")
    CSQLITE_SYM(bind_text, "sqlite3_bind_text")
    CSQLITE_SYM(bind_null, "sqlite3_bind_null")
    CSQLITE_SYM(step, "sqlite3_step")
    CSQLITE_SYM(column_count, "sqlite3_column_count")
    CSQLITE_SYM(column_type, "sqlite3_column_type")
    CSQLITE_SYM(column_int64, "sqlite3_column_int64")
    CSQLITE_SYM(column_text, "sqlite3_column_text")
#undef CSQLITE_SYM
    return 0;
}

static inline void csqlite_unload(struct csqlite_api *api) {
    if (api->library) dlclose(api->library);
    api->library = NULL;
}

static inline const char *csqlite_dlerror(void) { return dlerror(); }

// SQLITE_TRANSIENT is a cast macro Swift cannot import: sqlite copies the bound text.
static inline int csqlite_bind_text(const struct csqlite_api *api, sqlite3_stmt *statement, int index,
                                    const char *text, int length) {
    return api->bind_text(statement, index, text, length, SQLITE_TRANSIENT);
}
#endif
