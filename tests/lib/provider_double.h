/* A master-key provider test double, used through the real registry and vtable. */
#ifndef TDE_TEST_PROVIDER_DOUBLE_H
#define TDE_TEST_PROVIDER_DOUBLE_H

#include "tde/sys/masterkey_provider.h"

/*
 * Scheme "double": "double://?id=NAME" opens a key whose id is "double:NAME";
 * wrap is AES-256-GCM under a key derived from NAME, so two names are two
 * different master keys. It implements generate_data_key itself.
 */
typedef struct provider_double_state {
    unsigned calls;         /* wrap + unwrap + generate_data_key calls so far */
    unsigned fail_at;       /* the call number (1-based) that fails; 0: never */
    tde_status fail_status; /* what the failing call returns */
    unsigned generated;     /* generate_data_key calls */
} provider_double_state;

extern provider_double_state provider_double;

/* Registers the double once per process (later calls are no-ops) and resets its state. */
void provider_double_register(void);

#endif
