// Throwaway keys for the msgauth unit tests (never used anywhere else).
#pragma once

namespace test_keys {

inline constexpr const char* kEd25519Pem =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIN2kuDC3hTK7tu/SFdpCAvPh70+WC+i0IdeeBISdW9d5\n"
    "-----END PRIVATE KEY-----\n";
inline constexpr const char* kEd25519Record = "v=DKIM1; k=ed25519; p=ZACm50YAYPoFLWlB5Xir0iEXMlvAVvDq2gBoqTXXmxk=";

// RSA-512: too small for RFC 8301, for the tests that check it is refused.
inline constexpr const char* kRsa512Pem =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIBVgIBADANBgkqhkiG9w0BAQEFAASCAUAwggE8AgEAAkEA1QUG8eoIIWikmP6v\n"
    "CBbMaI6BtutvUbNZSSl4DeJHPJOf8yEntUmk9WC9KyRVN2XBmt8W6+DkYDLUfWes\n"
    "+8/tRwIDAQABAkEAjshH128e9AXIDiTn/WwKpyqeF5XHj+O/PSLmrae2SAsSLoVn\n"
    "O+pyHtKp3HBVXaj9oHoJY2C0oM9PsYmQ2WbrAQIhAPJNVWrJ4tUJLmuOvIJbAg9Q\n"
    "0OuE1yAYfkYIfQF83q6xAiEA4Q/oy+CfSFbW18snhZLgY/TJQHGn3GvcXlaO/2XQ\n"
    "iXcCIQDjIPzVyoNYAXBDIJyycQ8APlhovbBOhMcxbNmJIH05MQIgCF9VI7B5fHFu\n"
    "kJyIHdn26wECM5mGyxZgHkpOC4Y4GcUCIQDtKY8gxcjgTP/L08HeBsg/1yL4a/k6\n"
    "8m6nlbKkqOUUXg==\n"
    "-----END PRIVATE KEY-----\n";
inline constexpr const char* kRsa512Record =
    "v=DKIM1; k=rsa; p=MFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBANUFBvHqCCFopJj+rwgWzGiOgbbrb1GzWUkpeA3iRzyTn/MhJ7VJpPVgvSskVTdlwZrfFuvg5GAy1H1nrPvP7UcCAwEAAQ==";
// The same public key as a bare PKCS#1 RSAPublicKey, as some publishers write it.
inline constexpr const char* kRsa512Pkcs1Record =
    "k=rsa; p=MEgCQQDVBQbx6gghaKSY/q8IFsxojoG2629Rs1lJKXgN4kc8k5/zISe1SaT1YL0rJFU3ZcGa3xbr4ORgMtR9Z6z7z+1HAgMBAAE=";

}  // namespace test_keys
