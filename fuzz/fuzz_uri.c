/* Fuzzes the master-key URI parser: any input either parses into consistent parts or fails. */
#include <stdlib.h>
#include <string.h>

#include "tde/sys/masterkey_provider.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    tde_uri *u = NULL;

    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    if (tde_uri_parse(&u, text) == TDE_OK) {
        const char *name, *value;
        /* Every accessor must give a terminated string no longer than the input. */
        if (strlen(tde_uri_scheme(u)) == 0 || strlen(tde_uri_host(u)) > size ||
            strlen(tde_uri_path(u)) > size || tde_uri_port(u) < 0 || tde_uri_port(u) > 65535 ||
            strcmp(tde_uri_text(u), text) != 0)
            abort();
        for (size_t i = 0; i < tde_uri_param_count(u); i++) {
            tde_uri_param_at(u, i, &name, &value);
            if (name == NULL || value == NULL || tde_uri_param(u, name) != value)
                abort();
        }
        tde_uri_free(u);
    } else if (u != NULL) {
        abort();
    }
    free(text);
    return 0;
}
