//! Authentication headers: Basic, and the schemes a server offers.
