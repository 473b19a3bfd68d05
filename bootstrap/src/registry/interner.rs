//! One shared copy of each network id and agent version: 100,000 peers name a handful of each.

use std::collections::HashSet;
use std::sync::Arc;

#[derive(Default)]
pub(super) struct Interner {
    strings: HashSet<Arc<str>>,
}

impl Interner {
    pub(super) fn intern(&mut self, text: &str) -> Arc<str> {
        if let Some(existing) = self.strings.get(text) {
            return existing.clone();
        }
        let interned: Arc<str> = Arc::from(text);
        self.strings.insert(interned.clone());
        interned
    }

    /// Drops the strings nothing else holds any more.
    pub(super) fn forget_unused(&mut self) {
        self.strings.retain(|s| Arc::strong_count(s) > 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_texts_share_one_copy_until_unused() {
        let mut interner = Interner::default();
        let a = interner.intern("mainnet");
        let b = interner.intern("mainnet");
        assert!(Arc::ptr_eq(&a, &b));
        drop((a, b));
        interner.forget_unused();
        assert!(interner.strings.is_empty());
    }
}
