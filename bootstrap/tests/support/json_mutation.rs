//! Mutations of JSON texts that reach past the parser: values of other types and at the bounds
//! of lengths and characters, members removed and added, broken structure, deep nesting.
//! Shared by the property tests of every decoder of untrusted JSON (the operator's admission
//! reviews include this file too).

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::Value;

/// Values that sit at or past the bounds of some field.
pub fn hostile_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        Just(Value::Bool(true)),
        Just(serde_json::json!(-1)),
        Just(serde_json::json!(0)),
        Just(serde_json::json!(1.5)),
        Just(serde_json::json!(u64::MAX)),
        Just(serde_json::json!(i64::MIN)),
        Just(serde_json::json!("")),
        Just(serde_json::json!("../etc/passwd")),
        Just(serde_json::json!("\u{0}\u{7f}\n")),
        Just(serde_json::json!("é🙂\u{202e}")),
        Just(serde_json::json!("/ip4/127.0.0.1/tcp/1/p2p/12D3KooWxx")),
        (0usize..400).prop_map(|n| serde_json::json!("a".repeat(n))),
        "[ -~]{0,80}".prop_map(Value::String),
        any::<u64>().prop_map(|n| serde_json::json!(n)),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map("[a-zA-Z]{0,12}", inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// Fragments that break JSON structure in ways parsers get wrong.
const FRAGMENTS: &[&str] = &[
    "\"", "{", "}", "[", "]", ",", ":", "null", "\\u0000", "\\ud800", "1e999", "-0", "0x10",
    "\u{feff}", "\"a\":1,", "//", "NaN",
];

/// One change to a JSON text.
#[derive(Clone, Debug)]
pub enum Edit {
    /// The value at one member path (an index into the paths) becomes `value`.
    Replace(Index, Value),
    /// A member of the object at one path is removed.
    Remove(Index),
    /// A member with this name and value is added to the object at one path.
    Add(Index, String, Value),
    /// One byte is xored.
    Flip(Index, u8),
    /// A fragment is inserted.
    Splice(Index, &'static str),
    /// The text is cut.
    Truncate(Index),
    /// The whole text is nested this deep in arrays.
    Nest(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<Index>(), hostile_value()).prop_map(|(i, v)| Edit::Replace(i, v)),
        1 => any::<Index>().prop_map(Edit::Remove),
        1 => (any::<Index>(), "[a-zA-Z]{1,12}", hostile_value()).prop_map(|(i, k, v)| Edit::Add(i, k, v)),
        2 => (any::<Index>(), 1u8..=255).prop_map(|(i, x)| Edit::Flip(i, x)),
        1 => (any::<Index>(), proptest::sample::select(FRAGMENTS)).prop_map(|(i, f)| Edit::Splice(i, f)),
        1 => any::<Index>().prop_map(Edit::Truncate),
        1 => (1usize..300).prop_map(Edit::Nest),
    ]
}

/// A few edits of a JSON text, applied in order.
#[derive(Clone, Debug)]
pub struct JsonMutation(pub Vec<Edit>);

pub fn json_mutation() -> impl Strategy<Value = JsonMutation> {
    proptest::collection::vec(edit(), 1..4).prop_map(JsonMutation)
}

/// JSON pointers of every value in `value`, the root first.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let escaped = key.replace('~', "~0").replace('/', "~1");
                pointers(child, format!("{at}/{escaped}"), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                pointers(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

impl JsonMutation {
    pub fn apply(&self, base: &[u8]) -> Vec<u8> {
        let mut text = base.to_vec();
        for edit in &self.0 {
            text = apply_edit(&text, edit);
        }
        text
    }
}

fn apply_edit(text: &[u8], edit: &Edit) -> Vec<u8> {
    // Structural edits need a parseable text; on a broken one they change nothing.
    let structural = |change: &dyn Fn(&mut Value, &[String])| -> Vec<u8> {
        let Ok(mut value) = serde_json::from_slice::<Value>(text) else {
            return text.to_vec();
        };
        let mut paths = Vec::new();
        pointers(&value, String::new(), &mut paths);
        change(&mut value, &paths);
        serde_json::to_vec(&value).expect("values encode")
    };
    match edit {
        Edit::Replace(at, new) => structural(&|value, paths| {
            if let Some(target) = value.pointer_mut(&paths[at.index(paths.len())]) {
                *target = new.clone();
            }
        }),
        Edit::Remove(at) => structural(&|value, paths| {
            let path = &paths[at.index(paths.len())];
            if let Some((parent, key)) = path.rsplit_once('/')
                && let Some(Value::Object(map)) = value.pointer_mut(parent)
            {
                map.remove(&key.replace("~1", "/").replace("~0", "~"));
            }
        }),
        Edit::Add(at, key, new) => structural(&|value, paths| {
            if let Some(Value::Object(map)) = value.pointer_mut(&paths[at.index(paths.len())]) {
                map.insert(key.clone(), new.clone());
            }
        }),
        Edit::Flip(at, xor) if !text.is_empty() => {
            let mut text = text.to_vec();
            let i = at.index(text.len());
            text[i] ^= xor;
            text
        }
        Edit::Splice(at, fragment) => {
            let i = at.index(text.len() + 1);
            [&text[..i], fragment.as_bytes(), &text[i..]].concat()
        }
        Edit::Truncate(at) => text[..at.index(text.len() + 1)].to_vec(),
        Edit::Nest(depth) => [
            "[".repeat(*depth).as_bytes(),
            text,
            "]".repeat(*depth).as_bytes(),
        ]
        .concat(),
        Edit::Flip(..) => text.to_vec(),
    }
}
