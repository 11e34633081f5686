//! Every key a config struct accepts, read from the struct itself (the serde_introspect
//! trick, recursive): a `Deserializer` that records the `fields` serde hands to
//! `deserialize_struct`, and follows one field per pass into nested structs, options,
//! lists and tables. Nothing here lists a key by hand, so the reference cannot drift.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};

/// What a key holds, as far as serde tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Integer,
    Number,
    String,
    /// A nested table with named keys (a struct); its keys are listed after it.
    Table,
    /// A table of free names (a map) holding the given kind.
    Map(Box<Kind>),
    /// A list of the given kind.
    List(Box<Kind>),
    /// One of these words.
    OneOf(Vec<String>),
    /// Anything serde's `deserialize_any` accepts (secrets, sizes, free values).
    Any,
    /// Not seen (a pass stopped before it).
    Unknown,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Bool => f.write_str("bool"),
            Kind::Integer => f.write_str("integer"),
            Kind::Number => f.write_str("number"),
            Kind::String => f.write_str("string"),
            Kind::Table => f.write_str("table"),
            Kind::Map(inner) => write!(f, "table of {inner}"),
            Kind::List(inner) => write!(f, "list of {inner}"),
            Kind::OneOf(words) => {
                let words: Vec<String> = words.iter().map(|w| format!("`{w}`")).collect();
                f.write_str(&words.join(" / "))
            }
            Kind::Any => f.write_str("value"),
            Kind::Unknown => f.write_str("?"),
        }
    }
}

/// One key: its dotted path (`api.tries`, `tests[].name`), what it holds, and the Rust
/// struct (and field) that declares it, for its doc comment.
#[derive(Debug, Clone)]
pub struct Key {
    pub path: String,
    pub kind: Kind,
    pub owner: &'static str,
    pub field: &'static str,
}

#[derive(Default)]
struct State {
    /// Structs seen: path -> (struct name, fields).
    structs: BTreeMap<String, (&'static str, &'static [&'static str])>,
    /// Kinds seen by path.
    kinds: BTreeMap<String, Kind>,
}

/// Every key of `T`, parents before children.
pub fn keys<T: DeserializeOwned>() -> Vec<Key> {
    let state = RefCell::new(State::default());
    let mut queue: Vec<Vec<&'static str>> = vec![Vec::new()];
    let mut explored = std::collections::BTreeSet::new();
    while let Some(selection) = queue.pop() {
        let _ = T::deserialize(Rec {
            state: &state,
            selection: &selection,
            depth: 0,
            path: String::new(),
        });
        let structs = state.borrow().structs.clone();
        for (path, (_, fields)) in structs {
            if explored.insert(path.clone()) && selection.len() < 8 {
                let chain = selection_to(&path);
                for field in fields {
                    let mut next = chain.clone();
                    next.push(*field);
                    queue.push(next);
                }
            }
        }
    }
    let state = state.into_inner();
    let mut out = Vec::new();
    for (path, (owner, fields)) in &state.structs {
        for field in *fields {
            let key = join(path, field);
            let kind = kind_at(&state.kinds, &key);
            out.push(Key {
                path: key,
                kind,
                owner,
                field,
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// The field names to follow to reach the struct at `path` (`a[].b.*` -> `[a, b]`).
fn selection_to(path: &str) -> Vec<&'static str> {
    path.split('.')
        .filter(|s| !s.is_empty() && *s != "*")
        .map(|s| &*Box::leak(s.trim_end_matches("[]").to_owned().into_boxed_str()))
        .collect()
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

fn kind_at(kinds: &BTreeMap<String, Kind>, path: &str) -> Kind {
    match kinds.get(path) {
        Some(Kind::List(_)) => Kind::List(Box::new(kind_at(kinds, &format!("{path}[]")))),
        Some(Kind::Map(_)) => Kind::Map(Box::new(kind_at(kinds, &format!("{path}.*")))),
        Some(kind) => kind.clone(),
        None => Kind::Unknown,
    }
}

#[derive(Debug)]
struct Stop;

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("introspection pass done")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Stop
    }
}

/// The recorder at one place of the tree.
struct Rec<'a> {
    state: &'a RefCell<State>,
    selection: &'a [&'static str],
    depth: usize,
    path: String,
}

impl Rec<'_> {
    fn note(&self, kind: Kind) {
        self.state
            .borrow_mut()
            .kinds
            .entry(self.path.clone())
            .or_insert(kind);
    }

    fn child(&self, path: String, depth: usize) -> Rec<'_> {
        Rec {
            state: self.state,
            selection: self.selection,
            depth,
            path,
        }
    }
}

macro_rules! leaf {
    ($($method:ident => $kind:expr, $visit:ident($value:expr);)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
                self.note($kind);
                visitor.$visit($value)
            }
        )*
    };
}

impl<'de> de::Deserializer<'de> for Rec<'_> {
    type Error = Stop;

    leaf! {
        deserialize_bool => Kind::Bool, visit_bool(false);
        deserialize_i8 => Kind::Integer, visit_i8(0);
        deserialize_i16 => Kind::Integer, visit_i16(0);
        deserialize_i32 => Kind::Integer, visit_i32(0);
        deserialize_i64 => Kind::Integer, visit_i64(0);
        deserialize_u8 => Kind::Integer, visit_u8(0);
        deserialize_u16 => Kind::Integer, visit_u16(0);
        deserialize_u32 => Kind::Integer, visit_u32(0);
        deserialize_u64 => Kind::Integer, visit_u64(0);
        deserialize_f32 => Kind::Number, visit_f32(0.0);
        deserialize_f64 => Kind::Number, visit_f64(0.0);
        deserialize_char => Kind::String, visit_char('x');
        deserialize_str => Kind::String, visit_str("x");
        deserialize_string => Kind::String, visit_str("x");
        deserialize_bytes => Kind::String, visit_str("x");
        deserialize_byte_buf => Kind::String, visit_str("x");
        deserialize_identifier => Kind::String, visit_str("x");
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        self.note(Kind::Any);
        visitor.visit_unit()
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        self.note(Kind::Any);
        Err(Stop)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        visitor.visit_some(self)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Stop> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Stop> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        self.note(Kind::List(Box::new(Kind::Unknown)));
        let path = format!("{}[]", self.path);
        visitor.visit_seq(OneElement(Some(self.child(path, self.depth))))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, visitor: V) -> Result<V::Value, Stop> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        visitor: V,
    ) -> Result<V::Value, Stop> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        self.note(Kind::Map(Box::new(Kind::Unknown)));
        let path = join(&self.path, "*");
        visitor.visit_map(Fields {
            keys: vec!["x"],
            value: Some(self.child(path, self.depth)),
            prefix: None,
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Stop> {
        self.note(Kind::Table);
        self.state
            .borrow_mut()
            .structs
            .entry(self.path.clone())
            .or_insert((name, fields));
        // Follow the selected field, if this pass goes deeper; else give no keys.
        let keys = match self.selection.get(self.depth) {
            Some(next) if fields.contains(next) => vec![*next],
            _ => Vec::new(),
        };
        let depth = self.depth + 1;
        let prefix = self.path.clone();
        visitor.visit_map(Fields {
            keys,
            value: Some(self.child(String::new(), depth)),
            prefix: Some(prefix),
        })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Stop> {
        self.note(Kind::OneOf(
            variants.iter().map(|v| (*v).to_owned()).collect(),
        ));
        match variants.first() {
            Some(first) => visitor.visit_enum((*first).into_deserializer()),
            None => Err(Stop),
        }
    }
}

struct OneElement<'a>(Option<Rec<'a>>);

impl<'de> de::SeqAccess<'de> for OneElement<'_> {
    type Error = Stop;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Stop> {
        match self.0.take() {
            Some(rec) => seed.deserialize(rec).map(Some),
            None => Ok(None),
        }
    }
}

/// The keys of one struct pass (or the one entry of a map), each value a recorder.
struct Fields<'a> {
    keys: Vec<&'static str>,
    value: Option<Rec<'a>>,
    /// For a struct: the struct's path, to which the key is appended. For a map: none,
    /// the value's path is set already.
    prefix: Option<String>,
}

impl<'de> de::MapAccess<'de> for Fields<'_> {
    type Error = Stop;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Stop> {
        match self.keys.first() {
            Some(key) => seed
                .deserialize(de::value::StrDeserializer::<Stop>::new(key))
                .map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Stop> {
        let key = if self.keys.is_empty() {
            return Err(Stop);
        } else {
            self.keys.remove(0)
        };
        let mut rec = self.value.take().ok_or(Stop)?;
        if let Some(prefix) = &self.prefix {
            rec.path = join(prefix, key);
        }
        seed.deserialize(rec)
    }
}
