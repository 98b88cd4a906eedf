//! Out-of-band pairing (filled in below).
