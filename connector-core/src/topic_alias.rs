//! Outbound MQTT 5 topic aliases: which PUBLISH may carry an alias instead of its topic.
//!
//! MQTT 5 lets a client replace a PUBLISH's topic with a two-byte alias once it has sent
//! the topic together with that alias on the same connection (the *binding*). The server
//! says in its CONNACK how many aliases it keeps (Topic Alias Maximum, 8 on AWS IoT Core);
//! a client that sends an alias above that, or an unbound alias, is disconnected.
//!
//! [`TopicAliasCache`] is the client's side of that table for one connection. It mirrors
//! the AWS IoT Device SDK v2's least-recently-used outbound behaviour: a topic not in the
//! table takes a free alias, or the alias of the least recently used topic once the table
//! is full, and is sent in full with it ([`AliasUse::Bind`]); a topic in the table is sent
//! with an empty topic and its alias ([`AliasUse::Reuse`]). Rebinding is safe because one
//! connection delivers its packets in order: a PUBLISH that still uses the old binding
//! reaches the server before the one that changes it.
//!
//! Reserved topics (those starting with `$`: shadow, jobs and provisioning requests) are
//! never aliased. They are rare next to telemetry, and each would push an application
//! topic out of a small table (AWS IoT Core allows 8 aliases).
//!
//! Aliases belong to one network connection. The transport makes a new table for every
//! connection, so messages resent after a reconnect bind their topics again.
//!
//! ```
//! use connector_core::topic_alias::{AliasUse, TopicAliasCache};
//! let mut aliases = TopicAliasCache::new(2);
//! assert_eq!(aliases.resolve("a"), AliasUse::Bind(1));
//! assert_eq!(aliases.resolve("a"), AliasUse::Reuse(1));
//! assert_eq!(aliases.resolve("b"), AliasUse::Bind(2));
//! // Full: "c" takes the alias of the least recently used topic, "a".
//! assert_eq!(aliases.resolve("c"), AliasUse::Bind(1));
//! assert_eq!(aliases.resolve("b"), AliasUse::Reuse(2));
//! ```

use std::collections::{BTreeMap, HashMap};

/// Outbound topic aliasing of an MQTT 5 connection (ignored on MQTT 3.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TopicAliasing {
    /// Every PUBLISH carries its topic: the default, as in the AWS IoT Device SDK v2.
    #[default]
    Disabled,
    /// Keep up to `max` aliases per connection, least recently used replaced first. The
    /// server's Topic Alias Maximum from the CONNACK caps it; a server that allows none
    /// turns aliasing off for that connection.
    Lru {
        /// Most aliases this client uses on one connection (0 turns aliasing off).
        max: u16,
    },
}

impl TopicAliasing {
    /// How many aliases to use on a connection whose server allows `server_max`.
    pub fn effective_max(self, server_max: u16) -> u16 {
        match self {
            TopicAliasing::Disabled => 0,
            TopicAliasing::Lru { max } => max.min(server_max),
        }
    }
}

/// How one PUBLISH uses the alias table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AliasUse {
    /// Send the topic and this alias: the server (re)binds the alias to the topic.
    Bind(u16),
    /// Send an empty topic and this alias, bound earlier on this connection.
    Reuse(u16),
    /// Send the topic alone (aliasing is off).
    Off,
}

/// The outbound alias table of one connection, least recently used replaced first.
#[derive(Debug, Clone)]
pub struct TopicAliasCache {
    max: u16,
    /// Topic → (alias, tick of its last use).
    by_topic: HashMap<String, (u16, u64)>,
    /// Tick of last use → topic: the least recently used topic is the first entry.
    by_use: BTreeMap<u64, String>,
    /// Aliases given back by [`TopicAliasCache::forget`], reused before new ones.
    free: Vec<u16>,
    /// The next never-used alias.
    next: u16,
    tick: u64,
}

impl TopicAliasCache {
    /// A table of at most `max` aliases (1..=max); 0 makes every answer [`AliasUse::Off`].
    pub fn new(max: u16) -> Self {
        Self { max, by_topic: HashMap::new(), by_use: BTreeMap::new(), free: Vec::new(), next: 1, tick: 0 }
    }

    /// The most aliases this table hands out.
    pub fn max(&self) -> u16 {
        self.max
    }

    /// How many topics are bound.
    pub fn len(&self) -> usize {
        self.by_topic.len()
    }

    /// Whether no topic is bound.
    pub fn is_empty(&self) -> bool {
        self.by_topic.is_empty()
    }

    /// How the next PUBLISH to `topic` is sent; records the use. An empty topic (it would
    /// be ambiguous with an alias-only PUBLISH) and a reserved `$` topic are never aliased.
    pub fn resolve(&mut self, topic: &str) -> AliasUse {
        if self.max == 0 || topic.is_empty() || topic.starts_with('$') {
            return AliasUse::Off;
        }
        self.tick += 1;
        let tick = self.tick;
        if let Some((alias, last)) = self.by_topic.get_mut(topic) {
            self.by_use.remove(last);
            *last = tick;
            let alias = *alias;
            self.by_use.insert(tick, topic.to_owned());
            return AliasUse::Reuse(alias);
        }
        let alias = if let Some(a) = self.free.pop() {
            a
        } else if self.next <= self.max {
            let a = self.next;
            self.next += 1;
            a
        } else {
            // Full: take the alias of the least recently used topic.
            let Some((_, victim)) = self.by_use.pop_first() else {
                return AliasUse::Off;
            };
            match self.by_topic.remove(&victim) {
                Some((a, _)) => a,
                None => return AliasUse::Off,
            }
        };
        self.by_topic.insert(topic.to_owned(), (alias, tick));
        self.by_use.insert(tick, topic.to_owned());
        AliasUse::Bind(alias)
    }

    /// Undoes the binding of `topic` when the PUBLISH that carried it never left the client:
    /// the topic is sent in full next time, and its alias is free again.
    pub fn forget(&mut self, topic: &str) {
        if let Some((alias, last)) = self.by_topic.remove(topic) {
            self.by_use.remove(&last);
            self.free.push(alias);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_when_max_is_zero_or_topic_empty_or_reserved() {
        let mut c = TopicAliasCache::new(0);
        assert_eq!(c.resolve("a"), AliasUse::Off);
        let mut c = TopicAliasCache::new(3);
        assert_eq!(c.resolve(""), AliasUse::Off);
        assert_eq!(c.resolve("$aws/things/t/shadow/get"), AliasUse::Off);
        assert!(c.is_empty());
    }

    #[test]
    fn binds_then_reuses() {
        let mut c = TopicAliasCache::new(3);
        assert_eq!(c.resolve("a"), AliasUse::Bind(1));
        assert_eq!(c.resolve("b"), AliasUse::Bind(2));
        assert_eq!(c.resolve("a"), AliasUse::Reuse(1));
        assert_eq!(c.resolve("b"), AliasUse::Reuse(2));
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn full_table_replaces_the_least_recently_used() {
        let mut c = TopicAliasCache::new(2);
        assert_eq!(c.resolve("a"), AliasUse::Bind(1));
        assert_eq!(c.resolve("b"), AliasUse::Bind(2));
        assert_eq!(c.resolve("a"), AliasUse::Reuse(1)); // b is now the least recent
        assert_eq!(c.resolve("c"), AliasUse::Bind(2));
        assert_eq!(c.resolve("b"), AliasUse::Bind(1)); // a was the least recent
        assert_eq!(c.resolve("c"), AliasUse::Reuse(2));
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn forget_frees_the_alias_and_rebinds_the_topic() {
        let mut c = TopicAliasCache::new(2);
        assert_eq!(c.resolve("a"), AliasUse::Bind(1));
        assert_eq!(c.resolve("b"), AliasUse::Bind(2));
        c.forget("a");
        assert_eq!(c.resolve("c"), AliasUse::Bind(1));
        assert_eq!(c.resolve("a"), AliasUse::Bind(2)); // b was the least recent
        c.forget("missing");
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn effective_max_is_capped_by_the_server() {
        assert_eq!(TopicAliasing::Disabled.effective_max(8), 0);
        assert_eq!(TopicAliasing::Lru { max: 16 }.effective_max(8), 8);
        assert_eq!(TopicAliasing::Lru { max: 4 }.effective_max(8), 4);
        assert_eq!(TopicAliasing::Lru { max: 4 }.effective_max(0), 0);
    }

    /// A model check: replay random traffic against a model of the server's table and
    /// check that every alias sent is in range and every reuse names the topic the server
    /// has bound to that alias.
    #[test]
    fn every_reuse_matches_what_the_server_has_bound() {
        for max in [1u16, 2, 3, 8] {
            let mut c = TopicAliasCache::new(max);
            let mut server: HashMap<u16, String> = HashMap::new();
            let mut seed = 0x9E37_79B9_7F4A_7C15_u64 ^ u64::from(max);
            for _ in 0..5_000 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let topic = format!("t/{}", seed % 11);
                if seed % 29 == 0 {
                    // The PUBLISH that would have carried a fresh binding failed locally.
                    if let AliasUse::Bind(a) = c.resolve(&topic) {
                        c.forget(&topic);
                        assert!(a >= 1 && a <= max);
                    }
                    continue;
                }
                match c.resolve(&topic) {
                    AliasUse::Bind(a) => {
                        assert!(a >= 1 && a <= max, "alias {a} out of 1..={max}");
                        server.insert(a, topic);
                    }
                    AliasUse::Reuse(a) => assert_eq!(server.get(&a), Some(&topic), "alias {a}"),
                    AliasUse::Off => panic!("aliasing is on"),
                }
                assert!(c.len() <= usize::from(max));
            }
        }
    }
}
