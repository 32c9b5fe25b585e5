//! Names of normalised event fields. One vocabulary for every decoder, so a query for
//! `user=alice` finds sshd logins, sudo commands and (later) Keystone users alike.

/// The account a record is about (the one logging in, failing, or having a session).
pub const USER: &str = "user";
/// Source address of a connection or login (`sshd … from IP`, netfilter `SRC=`).
pub const SRC_IP: &str = "src_ip";
pub const SRC_PORT: &str = "src_port";
pub const DST_IP: &str = "dst_ip";
pub const DST_PORT: &str = "dst_port";
/// Transport protocol (`tcp`, `udp`, `icmp`, …), lower case.
pub const PROTO: &str = "proto";
/// sshd authentication method (`password`, `publickey`, `keyboard-interactive/pam`, …).
pub const METHOD: &str = "method";
/// Key type and fingerprint as sshd prints them (`RSA SHA256:…`).
pub const KEY_TYPE: &str = "key_type";
pub const KEY_FINGERPRINT: &str = "key_fingerprint";
/// Identity change (su, sudo): who acted and who they became.
pub const FROM_USER: &str = "from_user";
pub const TO_USER: &str = "to_user";
pub const TTY: &str = "tty";
pub const PWD: &str = "pwd";
pub const COMMAND: &str = "command";
/// `success` or `failure`.
pub const OUTCOME: &str = "outcome";
/// For sessions: `opened` / `closed`.
pub const SESSION: &str = "session";
/// The PAM service (`sshd`, `su`, `sudo`, `login`, …) of a pam_unix line.
pub const SERVICE: &str = "service";
/// The short name of the rule that classified the record (`sshd.accepted`, `sudo.command`, …).
pub const ACTION: &str = "action";
/// Remote host as PAM reports it (`rhost=`), may be a name or an address.
pub const RHOST: &str = "rhost";
/// A file-name prefix found in front of the syslog line (loghub style).
pub const FILE_PREFIX: &str = "file_prefix";
