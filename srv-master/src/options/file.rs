//! Config files: [`Options`] from TOML or JSON text, with errors that name
//! the dotted key (`worker.count`).
//!
//! # How the key gets into the error
//!
//! The text is first parsed into a [`Tree`], a format-neutral tree of
//! tables, arrays and scalars, so a syntax error is the format's own message
//! (with its line and column). `Options` is then deserialized from the tree
//! by [`Node`], a small serde deserializer that knows the dotted path of
//! every value it hands out. When serde's derived code fails on a value (an
//! unknown field, since every options struct has `deny_unknown_fields`; a
//! wrong type; a `worker.require` that is neither `online` nor `listen`) the
//! error travels back through the table that held the value, and that table
//! writes the key in, unless a table further down already did.
//!
//! So the list of known keys is the one serde derives from the structs: a
//! new option needs no change here. Values are then checked by
//! [`Options::validate`], which names its keys itself.

use std::fmt;
use std::path::Path;

use serde::de::{self, Deserialize, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor};

use super::{Options, OptionsError};

impl Options {
    /// Options from TOML text, with the node module's dotted names as tables:
    /// `[worker]` then `count = 4` is `worker.count`. Durations are whole
    /// milliseconds; missing keys keep their defaults.
    ///
    /// ```
    /// use std::time::Duration;
    /// use srv_master::Options;
    ///
    /// let options = Options::from_toml_str(
    ///     "[worker]\n\
    ///      count = 8\n\
    ///      require = \"listen\"\n\
    ///      [shutdown]\n\
    ///      timeout = 30000\n",
    /// )?;
    /// assert_eq!(options.worker.count, 8);
    /// assert_eq!(options.shutdown.timeout, Duration::from_secs(30));
    /// assert_eq!(options.recycle.timeout, Duration::from_secs(15)); // the default
    ///
    /// let error = Options::from_toml_str("[worker]\ncont = 8\n").unwrap_err();
    /// assert_eq!(error.key, "worker.cont");
    /// # Ok::<(), srv_master::OptionsError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// Invalid TOML (`key` is empty and the problem gives the line), an
    /// unknown key, a value of the wrong type, or a value
    /// [`Options::validate`] refuses; `key` names the option.
    pub fn from_toml_str(text: &str) -> Result<Options, OptionsError> {
        let tree: Tree = toml::from_str(text)
            .map_err(|error| OptionsError::new("", error.to_string().trim_end()))?;
        Options::from_tree(&tree)
    }

    /// Options from JSON text: an object of objects, `{"worker": {"count":
    /// 4}}`. Otherwise as [`Options::from_toml_str`].
    ///
    /// ```
    /// use srv_master::Options;
    ///
    /// let options = Options::from_json_str(r#"{ "worker": { "count": 2 } }"#)?;
    /// assert_eq!(options.worker.count, 2);
    ///
    /// let error = Options::from_json_str(r#"{ "worker": { "count": 0 } }"#).unwrap_err();
    /// assert_eq!(error.key, "worker.count");
    /// assert_eq!(error.to_string(), "invalid option worker.count: must be at least 1");
    /// # Ok::<(), srv_master::OptionsError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Options::from_toml_str`], for JSON.
    pub fn from_json_str(text: &str) -> Result<Options, OptionsError> {
        let tree: Tree = serde_json::from_str(text)
            .map_err(|error| OptionsError::new("", &format!("JSON parse error: {error}")))?;
        Options::from_tree(&tree)
    }

    /// Options from a config file: TOML when the name ends in `.toml`, JSON
    /// when it ends in `.json`. Errors carry the path in
    /// [`OptionsError::file`].
    ///
    /// ```no_run
    /// let options = srv_master::Options::from_file("/etc/my-server/srv.toml")?;
    /// srv_master::Master::current_exe(options)?.run()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// ```
    /// let error = srv_master::Options::from_file("srv.yaml").unwrap_err();
    /// assert_eq!(
    ///     error.to_string(),
    ///     "srv.yaml: unknown config file format: the name must end in .toml or .json"
    /// );
    /// ```
    ///
    /// # Errors
    ///
    /// Another extension, the file cannot be read, or what
    /// [`Options::from_toml_str`] and [`Options::from_json_str`] refuse.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Options, OptionsError> {
        let path = path.as_ref();
        let in_file = |mut error: OptionsError| {
            error.file = Some(path.to_owned());
            error
        };
        let extension = path.extension().and_then(|extension| extension.to_str());
        let parse = match extension {
            Some(extension) if extension.eq_ignore_ascii_case("toml") => Options::from_toml_str,
            Some(extension) if extension.eq_ignore_ascii_case("json") => Options::from_json_str,
            _ => {
                let problem = "unknown config file format: the name must end in .toml or .json";
                return Err(in_file(OptionsError::new("", problem)));
            }
        };
        let text = std::fs::read_to_string(path)
            .map_err(|error| in_file(OptionsError::new("", &format!("cannot read: {error}"))))?;
        parse(&text).map_err(in_file)
    }

    fn from_tree(tree: &Tree) -> Result<Options, OptionsError> {
        let options = Options::deserialize(Node { tree, path: String::new() })
            .map_err(|error| OptionsError::new(&error.key, &error.message))?;
        options.validate()?;
        Ok(options)
    }
}

/// A parsed config file, whatever its format.
#[derive(Debug, Clone, PartialEq)]
enum Tree {
    /// A TOML table or a JSON object, keys in file order (TOML tables come
    /// sorted by key; it does not matter).
    Table(Vec<(String, Tree)>),
    Array(Vec<Tree>),
    String(String),
    Integer(i64),
    /// A JSON number above `i64::MAX`.
    Unsigned(u64),
    Float(f64),
    Bool(bool),
    /// JSON `null`: an `Option` left unset.
    Null,
}

impl<'de> Deserialize<'de> for Tree {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Tree, D::Error> {
        deserializer.deserialize_any(TreeVisitor)
    }
}

struct TreeVisitor;

impl<'de> Visitor<'de> for TreeVisitor {
    type Value = Tree;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a config file")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Tree, E> {
        Ok(Tree::Bool(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Tree, E> {
        Ok(Tree::Integer(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Tree, E> {
        Ok(i64::try_from(value).map_or(Tree::Unsigned(value), Tree::Integer))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Tree, E> {
        Ok(Tree::Float(value))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Tree, E> {
        Ok(Tree::String(value.to_owned()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Tree, E> {
        Ok(Tree::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Tree, E> {
        Ok(Tree::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Tree, D::Error> {
        Tree::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Tree, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Tree::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tree, A::Error> {
        let mut entries: Vec<(String, Tree)> = Vec::new();
        while let Some((key, value)) = map.next_entry::<String, Tree>()? {
            // TOML refuses duplicate keys itself; for JSON, say where it is.
            if entries.iter().any(|(known, _)| *known == key) {
                return Err(de::Error::custom(format_args!("duplicate key `{key}`")));
            }
            entries.push((key, value));
        }
        Ok(Tree::Table(entries))
    }
}

/// Why deserializing from a [`Node`] failed, and at which dotted key
/// (empty for the whole file, or until a table fills it in).
#[derive(Debug)]
struct KeyedError {
    key: String,
    message: String,
}

impl KeyedError {
    /// The error, naming `key` unless it names a key already (a deeper one).
    fn at(mut self, key: &str) -> KeyedError {
        if self.key.is_empty() {
            key.clone_into(&mut self.key);
        }
        self
    }
}

impl fmt::Display for KeyedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for KeyedError {}

impl de::Error for KeyedError {
    fn custom<T: fmt::Display>(message: T) -> KeyedError {
        KeyedError { key: String::new(), message: message.to_string() }
    }
}

/// A value of the tree and its dotted key (empty for the root).
struct Node<'t> {
    tree: &'t Tree,
    path: String,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

impl<'de> Deserializer<'de> for Node<'_> {
    type Error = KeyedError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, KeyedError> {
        match self.tree {
            Tree::Table(entries) => {
                visitor.visit_map(Entries { entries: entries.iter(), path: self.path, next: None })
            }
            Tree::Array(items) => visitor.visit_seq(Items { items: items.iter(), path: self.path }),
            Tree::String(value) => visitor.visit_str(value),
            Tree::Integer(value) => visitor.visit_i64(*value),
            Tree::Unsigned(value) => visitor.visit_u64(*value),
            Tree::Float(value) => visitor.visit_f64(*value),
            Tree::Bool(value) => visitor.visit_bool(*value),
            Tree::Null => visitor.visit_unit(),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, KeyedError> {
        match self.tree {
            Tree::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, KeyedError> {
        match self.tree {
            // A unit variant by name, like `require = "listen"`.
            Tree::String(value) => visitor.visit_enum(value.as_str().into_deserializer()),
            _ => self.deserialize_any(visitor),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct newtype_struct seq tuple tuple_struct
        map struct identifier ignored_any
    }
}

/// The entries of a table, handed out with their dotted keys.
struct Entries<'t> {
    entries: std::slice::Iter<'t, (String, Tree)>,
    /// The table's own dotted key.
    path: String,
    /// The entry whose key was handed out and whose value comes next.
    next: Option<&'t (String, Tree)>,
}

impl<'de> MapAccess<'de> for Entries<'_> {
    type Error = KeyedError;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, KeyedError> {
        let Some(entry) = self.entries.next() else { return Ok(None) };
        self.next = Some(entry);
        let key: de::value::StrDeserializer<'_, KeyedError> = entry.0.as_str().into_deserializer();
        // An unknown field fails here, on its key.
        seed.deserialize(key).map(Some).map_err(|error| error.at(&join(&self.path, &entry.0)))
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, KeyedError> {
        let Some((key, tree)) = self.next.take() else {
            return Err(de::Error::custom("a value was asked for before its key"));
        };
        let path = join(&self.path, key);
        seed.deserialize(Node { tree, path: path.clone() }).map_err(|error| error.at(&path))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

/// The items of an array; an error in one names the array's key.
struct Items<'t> {
    items: std::slice::Iter<'t, Tree>,
    path: String,
}

impl<'de> SeqAccess<'de> for Items<'_> {
    type Error = KeyedError;

    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, KeyedError> {
        let Some(tree) = self.items.next() else { return Ok(None) };
        seed.deserialize(Node { tree, path: self.path.clone() }).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::Require;

    fn toml_error(text: &str) -> OptionsError {
        Options::from_toml_str(text).expect_err(text)
    }

    fn json_error(text: &str) -> OptionsError {
        Options::from_json_str(text).expect_err(text)
    }

    #[test]
    fn toml_nested_tables_set_the_dotted_names() {
        let options = Options::from_toml_str(
            "[worker]\n\
             count = 3\n\
             ignore_sigint = false\n\
             require = \"listen\"\n\
             timeout = 500\n\
             [recycle]\n\
             timeout = 1000\n\
             [shutdown]\n\
             timeout = 2000\n\
             [restart]\n\
             delay = 100\n\
             max_delay = 400\n",
        )
        .unwrap();
        let mut expected = Options::default();
        expected.worker.count = 3;
        expected.worker.ignore_sigint = false;
        expected.worker.require = Require::Listen;
        expected.worker.timeout = Duration::from_millis(500);
        expected.recycle.timeout = Duration::from_millis(1000);
        expected.shutdown.timeout = Duration::from_millis(2000);
        expected.restart.delay = Duration::from_millis(100);
        expected.restart.max_delay = Duration::from_millis(400);
        assert_eq!(options, expected);
        // Dotted keys are the same thing in TOML.
        let dotted = Options::from_toml_str("worker.count = 3\nrecycle.timeout = 1000\n").unwrap();
        assert_eq!(dotted.worker.count, 3);
        assert_eq!(dotted.recycle.timeout, Duration::from_millis(1000));
    }

    #[test]
    fn strings_arrays_and_optional_values() {
        let options = Options::from_toml_str(
            "[worker]\n\
             user = \"www-data\"\n\
             [listen]\n\
             allow = [\"0.0.0.0:80\", \"unix:/run/app.sock\"]\n",
        )
        .unwrap();
        assert_eq!(options.worker.user.as_deref(), Some("www-data"));
        assert_eq!(options.worker.group, None);
        let allow: Vec<String> = options.listen.allow.iter().map(ToString::to_string).collect();
        assert_eq!(allow, ["0.0.0.0:80", "unix:/run/app.sock"]);
        let options = Options::from_json_str(r#"{"worker": {"user": null}}"#).unwrap();
        assert_eq!(options.worker.user, None);

        let error = toml_error("[listen]\nallow = [\"0.0.0.0:80\", \"nowhere\"]\n");
        assert_eq!(error.key, "listen.allow", "{error}");
        assert_eq!(toml_error("[listen]\nallow = \"0.0.0.0:80\"\n").key, "listen.allow");
        assert_eq!(toml_error("[worker]\nuser = \"\"\n").key, "worker.user");
    }

    #[test]
    fn missing_keys_keep_their_defaults() {
        assert_eq!(Options::from_toml_str("").unwrap(), Options::default());
        assert_eq!(Options::from_toml_str("[worker]\n").unwrap(), Options::default());
        assert_eq!(Options::from_json_str("{}").unwrap(), Options::default());
        let options = Options::from_toml_str("[worker]\ncount = 7\n").unwrap();
        assert_eq!(options.worker.count, 7);
        assert_eq!(options.worker.timeout, Options::default().worker.timeout);
        assert_eq!(options.shutdown, Options::default().shutdown);
    }

    #[test]
    fn unknown_keys_are_named_with_their_path() {
        let error = toml_error("[worker]\ncont = 3\n");
        assert_eq!(error.key, "worker.cont");
        assert!(error.problem.starts_with("unknown field `cont`, expected one of"), "{error}");
        assert!(error.problem.contains("`count`"), "{error}");
        assert!(error.to_string().starts_with("invalid option worker.cont: "), "{error}");
        assert_eq!(toml_error("[workers]\ncount = 3\n").key, "workers");
        assert_eq!(toml_error("colour = \"blue\"\n").key, "colour");
        assert_eq!(json_error(r#"{"restart": {"delay": 1, "dealy": 2}}"#).key, "restart.dealy");
    }

    #[test]
    fn invalid_values_are_named() {
        let error = toml_error("[worker]\ncount = 0\n");
        assert_eq!(error.key, "worker.count");
        assert_eq!(error.to_string(), "invalid option worker.count: must be at least 1");
        assert_eq!(toml_error("[worker]\ntimeout = 0\n").key, "worker.timeout");
        assert_eq!(toml_error("[shutdown]\ntimeout = 0\n").key, "shutdown.timeout");
        assert_eq!(json_error(r#"{"recycle": {"timeout": 0}}"#).key, "recycle.timeout");
        assert_eq!(toml_error("[worker]\ncount = 100000\n").key, "worker.count");
        let error = toml_error("[restart]\ndelay = 9000\nmax_delay = 1000\n");
        assert_eq!(error.key, "restart.max_delay");
    }

    #[test]
    fn wrong_types_are_named() {
        let cases = [
            ("[worker]\ncount = \"three\"\n", "worker.count", "invalid type: string \"three\""),
            ("[worker]\ncount = -1\n", "worker.count", "invalid value: integer `-1`"),
            ("[worker]\ncount = 2.5\n", "worker.count", "invalid type: floating point `2.5`"),
            ("[worker]\nignore_sigint = 1\n", "worker.ignore_sigint", "invalid type: integer"),
            ("[worker]\nrequire = \"ready\"\n", "worker.require", "unknown variant `ready`"),
            ("[worker]\nrequire = 1\n", "worker.require", "invalid type: integer `1`"),
            ("[shutdown]\ntimeout = \"15s\"\n", "shutdown.timeout", "invalid type: string"),
            ("[shutdown]\ntimeout = [1]\n", "shutdown.timeout", "invalid type: sequence"),
            ("worker = 4\n", "worker", "invalid type: integer `4`, expected struct"),
        ];
        for (text, key, problem) in cases {
            let error = toml_error(text);
            assert_eq!(error.key, key, "{text:?}: {error}");
            assert!(error.problem.starts_with(problem), "{text:?}: {error}");
        }
    }

    #[test]
    fn json_is_the_same() {
        let options = Options::from_json_str(
            r#"{"worker": {"count": 3, "require": "listen"}, "shutdown": {"timeout": 20000}}"#,
        )
        .unwrap();
        assert_eq!(options.worker.count, 3);
        assert_eq!(options.worker.require, Require::Listen);
        assert_eq!(options.shutdown.timeout, Duration::from_secs(20));
        assert_eq!(options.recycle, Options::default().recycle);

        assert_eq!(json_error(r#"{"worker": {"cont": 3}}"#).key, "worker.cont");
        assert_eq!(json_error(r#"{"worker": {"count": 0}}"#).key, "worker.count");
        let error = json_error(r#"{"worker": {"count": "3"}}"#);
        assert_eq!(error.key, "worker.count");
        assert!(error.problem.starts_with("invalid type: string \"3\""), "{error}");
        let error = json_error(r#"{"worker": {"count": 18446744073709551615}}"#);
        assert_eq!(error.key, "worker.count", "{error}");
        assert_eq!(json_error(r#"{"worker": {"timeout": null}}"#).key, "worker.timeout");
        assert_eq!(json_error("[1, 2]").key, "");
    }

    #[test]
    fn syntax_errors_give_the_line() {
        let error = toml_error("[worker]\ncount = \n");
        assert_eq!(error.key, "");
        assert!(error.problem.contains("line 2"), "{error}");
        assert!(!error.to_string().starts_with("invalid option"), "{error}");
        let error = json_error("{\"worker\": {\"count\": 1, \"count\": 2}}");
        assert!(error.problem.starts_with("JSON parse error: duplicate key `count` at line 1"));
        let error = json_error("{\"worker\": {\"count\": 3,}}");
        assert_eq!(error.key, "");
        assert!(error.problem.starts_with("JSON parse error: "), "{error}");
        assert!(error.problem.contains("line 1"), "{error}");
    }

    /// A directory of its own for one test, removed when dropped.
    struct TempDir(std::path::PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let name = format!("srv-master-options-{tag}-{}", std::process::id());
            let path = std::env::temp_dir().join(name);
            std::fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn files_by_extension() {
        let dir = TempDir::new("files");
        let toml = dir.0.join("srv.toml");
        std::fs::write(&toml, "[worker]\ncount = 5\n").unwrap();
        assert_eq!(Options::from_file(&toml).unwrap().worker.count, 5);
        let json = dir.0.join("srv.JSON");
        std::fs::write(&json, r#"{"worker": {"count": 6}}"#).unwrap();
        assert_eq!(Options::from_file(&json).unwrap().worker.count, 6);

        std::fs::write(&toml, "[worker]\ncont = 5\n").unwrap();
        let error = Options::from_file(&toml).unwrap_err();
        assert_eq!(error.key, "worker.cont");
        assert_eq!(error.file.as_deref(), Some(toml.as_path()));
        let shown = error.to_string();
        assert!(shown.starts_with(&format!("{}: invalid option worker.cont: ", toml.display())));

        let missing = dir.0.join("missing.toml");
        let error = Options::from_file(&missing).unwrap_err();
        assert_eq!((error.key.as_str(), error.file.as_deref()), ("", Some(missing.as_path())));
        assert!(error.problem.starts_with("cannot read: "), "{error}");
        let error = Options::from_file(dir.0.join("srv.yaml")).unwrap_err();
        assert!(error.problem.starts_with("unknown config file format"), "{error}");
    }
}
