//! Certificate facts for the troubleshooter (TS-2..TS-4): parsed from DER.
