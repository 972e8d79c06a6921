//! Listening addresses: TCP (IPv4, IPv6) or a Unix-domain socket path.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de, ser};

/// An address to listen on.
///
/// Parsed from text: `127.0.0.1:8080`, `[::1]:8080`, `localhost:8080`
/// (as `127.0.0.1`), `unix:/run/app.sock`, or any text that starts with `/`
/// or `.` as a Unix socket path.
///
/// On the wire it travels as this text, so an IPv6 scope id
/// (`[fe80::1%2]:80`) survives; a Unix path that is not UTF-8 cannot be
/// sent.
///
/// Shown (`Display`), a Unix path has its control characters and
/// backslashes escaped as `{:?}` would escape them: a path comes from a
/// worker, and a newline in it must not forge a log line. The wire and
/// [`ListenAddr::Unix`] keep the path as it is.
///
/// ```
/// use srv_proto::ListenAddr;
/// let tcp: ListenAddr = "127.0.0.1:8080".parse().unwrap();
/// assert!(matches!(tcp, ListenAddr::Tcp(_)));
/// let unix: ListenAddr = "unix:/tmp/app.sock".parse().unwrap();
/// assert_eq!(unix.to_string(), "unix:/tmp/app.sock");
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
    fn from(addr: SocketAddr) -> ListenAddr {
        ListenAddr::Tcp(addr)
    }
}

impl Serialize for ListenAddr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if let ListenAddr::Unix(path) = self
            && path.to_str().is_none()
        {
            return Err(ser::Error::custom(format!(
                "unix socket path {} is not UTF-8",
                path.display()
            )));
        }
        if let ListenAddr::Unix(path) = self
            && path.as_os_str().is_empty()
        {
            return Err(ser::Error::custom("unix socket path is empty"));
        }
        match self {
            ListenAddr::Tcp(addr) => serializer.collect_str(addr),
            // The raw path: `Display` escapes it for log lines.
            ListenAddr::Unix(path) => {
                let path = path.to_str().expect("checked above");
                serializer.serialize_str(&format!("unix:{path}"))
            }
        }
    }
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
                for c in path.to_string_lossy().chars() {
                    if c.is_control() || c == '\\' {
                        write!(f, "{}", c.escape_debug())?;
                    } else {
                        write!(f, "{c}")?;
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
        for text in ["", "80", "example.com:80", "1.2.3.4", "unix:", "localhost:http"] {
            let error = text.parse::<ListenAddr>().unwrap_err();
            assert!(error.to_string().contains(&format!("'{text}'")), "{error}");
        }
    }
}
