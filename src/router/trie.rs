//! A radix trie over path bytes with parameter (`{name}`: one segment) and tail (`{*name}` or a
//! byte prefix: the rest) edges. Leaves are numbered; what a leaf holds is the caller's business.
//!
//! Lookup walks static bytes first, then a parameter, then a tail, backtracking when a more
//! specific branch has no accepted leaf, so the first leaf the visitor accepts is the most
//! specific match. It allocates nothing: parameter ranges go onto a fixed stack.

use std::ops::Range;

/// Most parameters (including a tail) one pattern may hold.
pub const MAX_PARAMS: usize = 15;

/// One piece of a compiled path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Static(Vec<u8>),
    /// One whole, non-empty segment.
    Param,
    /// Everything left, possibly nothing; always the last piece.
    Tail,
}

/// Byte ranges of the parameters matched so far, in pattern order.
#[derive(Clone)]
pub struct Params {
    len: usize,
    ranges: [(u32, u32); MAX_PARAMS + 1],
}

impl Default for Params {
    fn default() -> Self {
        Params { len: 0, ranges: [(0, 0); MAX_PARAMS + 1] }
    }
}

impl std::fmt::Debug for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Params {
    fn push(&mut self, r: Range<usize>) {
        if self.len < self.ranges.len() {
            self.ranges[self.len] = (r.start as u32, r.end as u32);
        }
        self.len += 1;
    }
    fn pop(&mut self) {
        self.len -= 1;
    }
    pub fn clear(&mut self) {
        self.len = 0;
    }
    pub fn len(&self) -> usize {
        self.len.min(self.ranges.len())
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn get(&self, i: usize) -> Option<Range<usize>> {
        (i < self.len()).then(|| self.ranges[i].0 as usize..self.ranges[i].1 as usize)
    }
    pub fn iter(&self) -> impl Iterator<Item = Range<usize>> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }
}

#[derive(Debug, Default, Clone)]
struct Node {
    /// Static bytes this node consumes.
    prefix: Box<[u8]>,
    /// First byte of each static child, parallel to `children`.
    indices: Vec<u8>,
    children: Vec<Node>,
    /// After one segment (the node's own prefix is empty).
    param: Option<Box<Node>>,
    /// The path ends exactly here.
    exact: Option<u32>,
    /// The rest of the path, whatever it is, from here.
    tail: Option<u32>,
}

/// The compiled trie of one virtual host.
#[derive(Debug, Default, Clone)]
pub struct Trie {
    root: Node,
    leaves: u32,
}

impl Trie {
    /// The leaf a pattern ends at (created on first use). Pieces must start with a static `/`.
    pub fn leaf_for(&mut self, pieces: &[Piece]) -> u32 {
        let mut node = &mut self.root;
        let mut tail = false;
        for p in pieces {
            match p {
                Piece::Static(s) => node = insert_static(node, s),
                Piece::Param => node = &mut **node.param.get_or_insert_with(Box::default),
                Piece::Tail => {
                    tail = true;
                    break;
                }
            }
        }
        let slot = if tail { &mut node.tail } else { &mut node.exact };
        match *slot {
            Some(id) => id,
            None => {
                let id = self.leaves;
                *slot = Some(id);
                self.leaves += 1;
                id
            }
        }
    }

    /// Walk `path`, offering leaves to `visit` most specific first; the first it accepts wins.
    pub fn find<F: FnMut(u32, &Params) -> bool>(&self, path: &[u8], params: &mut Params, visit: &mut F) -> bool {
        params.len = 0;
        match path.strip_prefix(&*self.root.prefix) {
            Some(_) => walk(&self.root, path, self.root.prefix.len(), params, visit),
            None => false,
        }
    }
}

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Descend from `node` along static bytes `s`, splitting nodes as needed; returns the node where
/// `s` ends exactly.
fn insert_static<'a>(node: &'a mut Node, s: &[u8]) -> &'a mut Node {
    if s.is_empty() {
        return node;
    }
    let Some(i) = node.indices.iter().position(|&b| b == s[0]) else {
        node.indices.push(s[0]);
        node.children.push(Node { prefix: s.into(), ..Node::default() });
        let last = node.children.len() - 1;
        return &mut node.children[last];
    };
    let child = &mut node.children[i];
    let common = common_prefix(&child.prefix, s);
    if common < child.prefix.len() {
        // Split: the child keeps the tail of its prefix under a new node holding the common part.
        let mut old = std::mem::take(child);
        let rest: Box<[u8]> = old.prefix[common..].into();
        let head: Box<[u8]> = old.prefix[..common].into();
        old.prefix = rest;
        *child = Node { prefix: head, indices: vec![old.prefix[0]], children: vec![old], ..Node::default() };
    }
    insert_static(child, &s[common..])
}

/// `s.starts_with(p)` for the few bytes of a trie edge, without a call to libc's memcmp.
#[inline]
fn starts_with(s: &[u8], p: &[u8]) -> bool {
    s.len() >= p.len() && s.iter().zip(p).all(|(a, b)| a == b)
}

fn walk<F: FnMut(u32, &Params) -> bool>(
    mut node: &Node,
    path: &[u8],
    mut pos: usize,
    params: &mut Params,
    visit: &mut F,
) -> bool {
    loop {
        if pos == path.len() {
            // A parameter is never empty and a static edge never is: only the leaves here.
            if let Some(l) = node.exact {
                if visit(l, params) {
                    return true;
                }
            }
            return take_tail(node, path, pos, params, visit);
        }
        let b = path[pos];
        // Plain scans: these slices are a few bytes, shorter than memchr's setup.
        let child = node
            .indices
            .iter()
            .position(|&x| x == b)
            .map(|i| &node.children[i])
            .filter(|c| starts_with(&path[pos..], &c.prefix));
        if node.param.is_none() && node.tail.is_none() {
            // Nothing to fall back to here: descend without recursing.
            match child {
                Some(c) => {
                    pos += c.prefix.len();
                    node = c;
                    continue;
                }
                None => return false,
            }
        }
        if let Some(c) = child {
            if walk(c, path, pos + c.prefix.len(), params, visit) {
                return true;
            }
        }
        if let Some(p) = &node.param {
            let end = path[pos..].iter().position(|&x| x == b'/').map_or(path.len(), |e| pos + e);
            if end > pos {
                params.push(pos..end);
                if walk(p, path, end, params, visit) {
                    return true;
                }
                params.pop();
            }
        }
        return take_tail(node, path, pos, params, visit);
    }
}

fn take_tail<F: FnMut(u32, &Params) -> bool>(
    node: &Node,
    path: &[u8],
    pos: usize,
    params: &mut Params,
    visit: &mut F,
) -> bool {
    if let Some(l) = node.tail {
        params.push(pos..path.len());
        if visit(l, params) {
            return true;
        }
        params.pop();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(p: &str) -> Vec<Piece> {
        // Test shorthand: ':' = param segment, '*' at the end = tail.
        let mut out = Vec::new();
        let mut lit = Vec::new();
        for b in p.bytes() {
            match b {
                b':' | b'*' => {
                    if !lit.is_empty() {
                        out.push(Piece::Static(std::mem::take(&mut lit)));
                    }
                    out.push(if b == b':' { Piece::Param } else { Piece::Tail });
                }
                _ => lit.push(b),
            }
        }
        if !lit.is_empty() {
            out.push(Piece::Static(lit));
        }
        out
    }

    fn first(t: &Trie, path: &str) -> Option<(u32, Vec<(usize, usize)>)> {
        let mut params = Params::default();
        let mut got = None;
        t.find(path.as_bytes(), &mut params, &mut |l, p| {
            got = Some((l, p.iter().map(|r| (r.start, r.end)).collect()));
            true
        });
        got
    }

    #[test]
    fn static_param_tail_order_with_backtracking() {
        let mut t = Trie::default();
        let me = t.leaf_for(&pieces("/users/me/x"));
        let id = t.leaf_for(&pieces("/users/:/x"));
        let rest = t.leaf_for(&pieces("/users/*"));
        let root = t.leaf_for(&pieces("/*"));
        assert_eq!(first(&t, "/users/me/x").map(|m| m.0), Some(me));
        assert_eq!(first(&t, "/users/42/x"), Some((id, vec![(7, 9)])));
        // `me` branch fails at `/y`, the param branch fails too, the tail takes it.
        assert_eq!(first(&t, "/users/me/y"), Some((rest, vec![(7, 11)])));
        assert_eq!(first(&t, "/users/"), Some((rest, vec![(7, 7)])));
        assert_eq!(first(&t, "/other"), Some((root, vec![(1, 6)])));
        assert_eq!(first(&t, "/users//x").map(|m| m.0), Some(rest), "a parameter is never empty");
    }

    #[test]
    fn longest_prefix_and_exact_before_tail() {
        let mut t = Trie::default();
        let a = t.leaf_for(&pieces("/api*"));
        let b = t.leaf_for(&pieces("/api/v1/*"));
        let e = t.leaf_for(&pieces("/api/v1/"));
        assert_eq!(first(&t, "/api/v1/x").map(|m| m.0), Some(b));
        assert_eq!(first(&t, "/api/v1/").map(|m| m.0), Some(e));
        assert_eq!(first(&t, "/api/v2").map(|m| m.0), Some(a));
        assert_eq!(first(&t, "/apix").map(|m| m.0), Some(a));
        assert_eq!(first(&t, "/ap"), None);
        // The same pattern twice is the same leaf.
        assert_eq!(t.leaf_for(&pieces("/api/v1/*")), b);
    }

    #[test]
    fn visitor_refusal_backtracks() {
        let mut t = Trie::default();
        let p = t.leaf_for(&pieces("/a/:"));
        let tail = t.leaf_for(&pieces("/a/*"));
        let mut params = Params::default();
        let mut seen = Vec::new();
        let found = t.find(b"/a/b", &mut params, &mut |l, _| {
            seen.push(l);
            l == tail
        });
        assert!(found);
        assert_eq!(seen, vec![p, tail]);
        assert!(params.len() <= 1);
    }
}
