/* Internal: the built-in providers and helpers the masterkey module shares. */
#ifndef TDE_LIB_MASTERKEY_PROVIDER_H
#define TDE_LIB_MASTERKEY_PROVIDER_H

#include "tde/masterkey.h"
#include "tde/sys/masterkey_provider.h"

/* The built-in vtables, registered lazily by registry.c. */
extern const tde_masterkey_provider_vtable masterkey_keyfile_vtable;
extern const tde_masterkey_provider_vtable masterkey_testkey_vtable;
extern const tde_masterkey_provider_vtable masterkey_kmip_vtable;
extern const tde_masterkey_provider_vtable masterkey_aws_kms_vtable;
extern const tde_masterkey_provider_vtable masterkey_tencent_kms_vtable;

#endif
