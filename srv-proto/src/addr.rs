//! Listening addresses: TCP (IPv4, IPv6) or a Unix-domain socket path.

use std::ffi::OsString;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de, ser};

/// The prefix of the text form of a Unix path that is not UTF-8: the
/// path's bytes in hexadecimal. A UTF-8 path is never written this way, so
/// peers that predate this form (and know only `unix:PATH`) still read
/// every address they could read before.
const UNIX_HEX: &str = "unix-hex:";

/// An address to listen on.
///
/// Built from a [`SocketAddr`] or an `(IP, port)` pair, a [`Path`] or a
/// [`PathBuf`] (`From`), or
/// parsed from text (`FromStr`): `127.0.0.1:8080`, `[::1]:8080`,
/// `localhost:8080` (as `127.0.0.1`), `unix:/run/app.sock`, any text that
/// starts with `/` or `.` as a Unix socket path, or `unix-hex:` and the
/// bytes of a path in hexadecimal, for a path that is not UTF-8.
///
/// On the wire it travels as this text, so an IPv6 scope id
/// (`[fe80::1%2]:80`) survives. A UTF-8 Unix path travels as `unix:PATH`,
/// the only form masters and workers of srv 0.1 know; a path that is
/// not UTF-8 travels as `unix-hex:...`, part of protocol 2
/// ([`crate::message::NON_UTF8_PATH_VERSION`]): srv-worker never sends one
/// to a master of protocol 1, which would refuse it as a bad message (and
/// could not send or name one either).
///
/// Shown (`Display`), a Unix path has its control characters and
/// backslashes escaped as `{:?}` would escape them, and the bytes that are
/// not UTF-8 shown as `\xNN`: a path comes from a worker, and a newline in
/// it must not forge a log line. The wire and [`ListenAddr::Unix`] keep the
/// path as it is.
///
/// ```
/// use std::net::SocketAddr;
/// use std::path::Path;
/// use srv_proto::ListenAddr;
///
/// let tcp = ListenAddr::from(SocketAddr::from(([127, 0, 0, 1], 8080)));
/// assert_eq!(tcp, "127.0.0.1:8080".parse()?);
/// let unix = ListenAddr::from(Path::new("/tmp/app.sock"));
/// assert_eq!(unix.to_string(), "unix:/tmp/app.sock");
/// assert_eq!(unix, "unix:/tmp/app.sock".parse()?);
/// # Ok::<(), srv_proto::AddrParseError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ListenAddr {
    /// A TCP address; port 0 asks for any free port.
    Tcp(SocketAddr),
    /// A Unix-domain stream socket at this path.
    Unix(PathBuf),
}

/// The error of parsing a [`ListenAddr`], naming the text.
///
/// It converts into an [`std::io::Error`] of kind `InvalidInput`, so `?`
/// works in functions that return `io::Result`.
///
/// ```
/// use srv_proto::ListenAddr;
///
/// let error = "example.com:80".parse::<ListenAddr>().unwrap_err();
/// assert!(error.to_string().starts_with("invalid listen address 'example.com:80'"));
/// let error = std::io::Error::from(error);
/// assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrParseError {
    text: String,
}

impl fmt::Display for AddrParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid listen address '{}': expected IP:PORT, [IPv6]:PORT, localhost:PORT or unix:PATH",
            self.text
        )
    }
}

impl std::error::Error for AddrParseError {}

impl From<AddrParseError> for std::io::Error {
    fn from(error: AddrParseError) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, error)
    }
}

impl FromStr for ListenAddr {
    type Err = AddrParseError;

    fn from_str(text: &str) -> Result<ListenAddr, AddrParseError> {
        let error = || AddrParseError { text: text.to_owned() };
        if let Some(hex) = text.strip_prefix(UNIX_HEX) {
            let bytes = decode_hex(hex).filter(|bytes| !bytes.is_empty()).ok_or_else(error)?;
            return Ok(ListenAddr::Unix(PathBuf::from(OsString::from_vec(bytes))));
        }
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(error());
            }
            return Ok(ListenAddr::Unix(PathBuf::from(path)));
        }
        if text.starts_with('/') || text.starts_with('.') {
            return Ok(ListenAddr::Unix(PathBuf::from(text)));
        }
        if let Some(port) = text.strip_prefix("localhost:") {
            let port: u16 = port.parse().map_err(|_| error())?;
            return Ok(ListenAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], port))));
        }
        text.parse::<SocketAddr>().map(ListenAddr::Tcp).map_err(|_| error())
    }
}

impl From<SocketAddr> for ListenAddr {
    /// ```
    /// use std::net::SocketAddr;
    /// use srv_proto::ListenAddr;
    ///
    /// let addr = ListenAddr::from(SocketAddr::from(([0, 0, 0, 0], 80)));
    /// assert_eq!(addr.to_string(), "0.0.0.0:80");
    /// ```
    fn from(addr: SocketAddr) -> ListenAddr {
        ListenAddr::Tcp(addr)
    }
}

impl<I: Into<IpAddr>> From<(I, u16)> for ListenAddr {
    /// A TCP address from an IP address and a port, as
    /// [`SocketAddr`]'s own `From<(I, u16)>`.
    ///
    /// ```
    /// use std::net::Ipv6Addr;
    /// use srv_proto::ListenAddr;
    ///
    /// assert_eq!(ListenAddr::from(([127, 0, 0, 1], 8080)).to_string(), "127.0.0.1:8080");
    /// assert_eq!(ListenAddr::from((Ipv6Addr::LOCALHOST, 0)).to_string(), "[::1]:0");
    /// ```
    fn from((ip, port): (I, u16)) -> ListenAddr {
        ListenAddr::Tcp(SocketAddr::new(ip.into(), port))
    }
}

impl From<&Path> for ListenAddr {
    /// A Unix socket path, taken as it is: any path, UTF-8 or not, names a
    /// Unix socket (text that looks like `IP:PORT` too).
    ///
    /// ```
    /// use std::path::Path;
    /// use srv_proto::ListenAddr;
    ///
    /// let addr = ListenAddr::from(Path::new("/run/app.sock"));
    /// assert_eq!(addr, ListenAddr::Unix("/run/app.sock".into()));
    /// ```
    fn from(path: &Path) -> ListenAddr {
        ListenAddr::Unix(path.to_owned())
    }
}

impl From<PathBuf> for ListenAddr {
    /// A Unix socket path, as [`From<&Path>`](#impl-From%3C%26Path%3E-for-ListenAddr).
    ///
    /// ```
    /// use srv_proto::ListenAddr;
    ///
    /// let path = std::env::temp_dir().join("app.sock");
    /// assert_eq!(ListenAddr::from(path.clone()), ListenAddr::Unix(path));
    /// ```
    fn from(path: PathBuf) -> ListenAddr {
        ListenAddr::Unix(path)
    }
}

impl From<&PathBuf> for ListenAddr {
    /// A Unix socket path, as [`From<&Path>`](#impl-From%3C%26Path%3E-for-ListenAddr).
    ///
    /// ```
    /// use srv_proto::ListenAddr;
    ///
    /// let path = std::env::temp_dir().join("app.sock");
    /// assert_eq!(ListenAddr::from(&path), ListenAddr::Unix(path));
    /// ```
    fn from(path: &PathBuf) -> ListenAddr {
        ListenAddr::Unix(path.clone())
    }
}

impl Serialize for ListenAddr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            ListenAddr::Tcp(addr) => serializer.collect_str(addr),
            ListenAddr::Unix(path) if path.as_os_str().is_empty() => {
                Err(ser::Error::custom("unix socket path is empty"))
            }
            // The raw path: `Display` escapes it for log lines.
            ListenAddr::Unix(path) => match path.to_str() {
                Some(path) => serializer.serialize_str(&format!("unix:{path}")),
                None => {
                    let hex: String = path
                        .as_os_str()
                        .as_bytes()
                        .iter()
                        .map(|byte| format!("{byte:02x}"))
                        .collect();
                    serializer.serialize_str(&format!("{UNIX_HEX}{hex}"))
                }
            },
        }
    }
}

/// The bytes that `hex` spells in pairs of hexadecimal digits, either case;
/// `None` for anything else.
fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| char::from(c).to_digit(16);
    let hex = hex.as_bytes();
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    hex.chunks(2).map(|pair| u8::try_from(digit(pair[0])? << 4 | digit(pair[1])?).ok()).collect()
}

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ListenAddr, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => write!(f, "{addr}"),
            ListenAddr::Unix(path) => {
                f.write_str("unix:")?;
                for chunk in path.as_os_str().as_bytes().utf8_chunks() {
                    for c in chunk.valid().chars() {
                        if c.is_control() || c == '\\' {
                            write!(f, "{}", c.escape_debug())?;
                        } else {
                            write!(f, "{c}")?;
                        }
                    }
                    for byte in chunk.invalid() {
                        write!(f, "\\x{byte:02x}")?;
                    }
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        let cases = [
            ("127.0.0.1:80", "127.0.0.1:80"),
            ("[::1]:8080", "[::1]:8080"),
            ("localhost:0", "127.0.0.1:0"),
            ("unix:/run/a.sock", "unix:/run/a.sock"),
            ("/run/a.sock", "unix:/run/a.sock"),
            ("./a.sock", "unix:./a.sock"),
        ];
        for (text, shown) in cases {
            let addr: ListenAddr = text.parse().unwrap();
            assert_eq!(addr.to_string(), shown, "{text}");
            assert_eq!(addr.to_string().parse::<ListenAddr>().unwrap(), addr);
        }
    }

    #[test]
    fn shown_paths_cannot_forge_log_lines_and_travel_unchanged() {
        let forged =
            "/tmp/a\n[2026-01-01T00:00:00Z INFO  srv] worker 9 (pid 1) started\r\u{1b}[0m\\";
        let addr = ListenAddr::Unix(PathBuf::from(forged));
        let shown = addr.to_string();
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert_eq!(
            shown,
            "unix:/tmp/a\\n[2026-01-01T00:00:00Z INFO  srv] worker 9 (pid 1) started\\r\\u{1b}[0m\\\\"
        );
        let mut bytes = Vec::new();
        crate::frame::encode(
            &crate::WorkerMessage::ListenRequest { addr: addr.clone() },
            &mut bytes,
        )
        .unwrap();
        let decoded =
            crate::frame::decode::<crate::WorkerMessage>(&bytes[crate::frame::HEADER_LEN..]);
        assert_eq!(decoded, Ok(crate::WorkerMessage::ListenRequest { addr }));
    }

    #[test]
    fn rejects_garbage_naming_it() {
        let hex = ["unix-hex:", "unix-hex:2", "unix-hex:2g", "unix-hex:+f", "unix-hex:2f\u{e9}"];
        for text in
            ["", "80", "example.com:80", "1.2.3.4", "unix:", "localhost:http"].iter().chain(&hex)
        {
            let error = text.parse::<ListenAddr>().unwrap_err();
            assert!(error.to_string().contains(&format!("'{text}'")), "{error}");
        }
    }

    #[test]
    fn a_path_that_is_not_utf8_is_spelled_in_hex_and_shown_escaped() {
        let path = PathBuf::from(OsString::from_vec(b"/tmp/\xff\\a\n.sock".to_vec()));
        let addr = ListenAddr::from(path.as_path());
        assert_eq!(addr.to_string(), "unix:/tmp/\\xff\\\\a\\n.sock");
        let hex = "unix-hex:2f746d702fff5c610a2e736f636b";
        assert_eq!(hex.parse::<ListenAddr>().unwrap(), addr);
        assert_eq!(
            hex.to_uppercase().replace("UNIX-HEX:", "unix-hex:").parse::<ListenAddr>().unwrap(),
            addr
        );
        // Any path may be spelled so, UTF-8 or not.
        assert_eq!(
            "unix-hex:2f61".parse::<ListenAddr>().unwrap(),
            ListenAddr::from(Path::new("/a"))
        );
        // A UTF-8 path named `unix-hex:...` is `unix:unix-hex:...`.
        let odd = ListenAddr::from(Path::new("unix-hex:2f61"));
        assert_eq!(format!("unix:{}", "unix-hex:2f61").parse::<ListenAddr>().unwrap(), odd);
    }
}
