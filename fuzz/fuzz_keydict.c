/* Fuzzes the key dictionary parser: any input either fails cleanly or parses into a dictionary
 * that encodes back to exactly the same bytes (the format has one encoding per dictionary). */
#include <stdlib.h>
#include <string.h>

#include "keymgr/keydict.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tde_keydict kd;
    tde_secret *again = NULL;

    tde_secret_allow_unlocked(1);
    if (tde_keydict_decode(&kd, data, size, "fuzz") != TDE_OK)
        return 0;
    if (tde_keydict_find(&kd, kd.current_id) == NULL)
        abort();
    if (tde_keydict_encode(&kd, &again) != TDE_OK || tde_secret_len(again) != size ||
        memcmp(tde_secret_data(again), data, size) != 0)
        abort();
    tde_secret_free(again);
    tde_keydict_clear(&kd);
    return 0;
}
