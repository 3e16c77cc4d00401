//! Unit tests of the host interfaces: grants, and the keyvalue client over a real unix socket
//! served by a small in-test agent (a map behind the wire protocol).
