//! The troubleshooter (SPEC section 2): seven checks against an Exchange server.
