//! TS-4 name matching of the Presence Gateway value against a certificate.
