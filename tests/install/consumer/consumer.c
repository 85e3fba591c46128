/* Built against an installed libtde: proves the headers, the library and its metadata work. */
#include <stdio.h>
#include <tde/cipher.h>

int
main(void)
{
    uint8_t key[16] = {0}, iv[16] = {0}, buf[4] = "abc";
    tde_cipher *c;
    if (tde_cipher_new(&c, TDE_METHOD_AES128_CTR, key, sizeof(key)) != TDE_OK ||
        tde_cipher_process(c, iv, 0, buf, buf, 3) != TDE_OK ||
        tde_cipher_process(c, iv, 0, buf, buf, 3) != TDE_OK)
        return 1;
    tde_cipher_free(c);
    printf("libtde %s: %s\n", tde_version(), buf);
    return buf[0] == 'a' ? 0 : 1;
}
