//! exchange-sim over a real port.
