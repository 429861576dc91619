//! The gcc oracle: `test/conformance/abi.c` prints what gcc computes from the installed
//! `<linux/acrn.h>`; this test compares it, both ways, with `acrn_uapi::layout`.
//!
//! Three checks:
//!
//! 1. **Values**: every struct (size, align, every member offset), every ioctl number and every
//!    constant printed by `abi.c` equals the Rust tables, and nothing is missing on either side.
//! 2. **Text**: `acrn_uapi::layout::write_json` prints byte for byte what `abi.c` prints, so
//!    either can be used as the canonical `abi --json`.
//! 3. **Completeness**: the struct members, macros and enumerators found in the header text
//!    itself (as preprocessed by gcc) are exactly those of the Rust tables, so a member or
//!    constant missing from both `abi.c` and the tables is still caught.
//!
//! If `gcc` is not installed the test prints a message and passes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use acrn_uapi::layout::{self, CONSTANTS, IOCTLS, STRUCTS};

const CFLAGS: &[&str] = &["-std=c11", "-O0", "-Wall", "-Wextra", "-Werror"];

fn abi_c() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../test/conformance/abi.c")
}

fn tmp_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("acrn-uapi-conformance");
    std::fs::create_dir_all(&dir).expect("create the temporary directory");
    dir
}

/// `true` if gcc can be run; prints why the test is skipped otherwise.
fn have_gcc() -> bool {
    match Command::new("gcc").arg("--version").output() {
        Ok(out) if out.status.success() => true,
        Ok(out) => panic!(
            "gcc --version failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("SKIPPED: gcc not found, the ABI conformance test needs it");
            false
        }
        Err(e) => panic!("cannot run gcc: {e}"),
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("output is UTF-8")
}

/// Compiles and runs `abi.c`; returns its output.
fn oracle_output() -> String {
    let exe = tmp_dir().join("abi");
    run(Command::new("gcc")
        .args(CFLAGS)
        .arg("-o")
        .arg(&exe)
        .arg(abi_c()));
    run(&mut Command::new(&exe))
}

// ---------------------------------------------------------------------------------------------
// A JSON parser for what abi.c prints: objects, strings without escapes, unsigned integers.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, PartialEq)]
enum Json {
    Object(Vec<(String, Json)>),
    Number(u64),
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn parse(text: &str) -> Json {
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
        };
        let v = p.value();
        p.ws();
        assert_eq!(p.i, p.s.len(), "trailing data after the JSON value");
        v
    }

    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) {
        self.ws();
        assert_eq!(
            self.s.get(self.i),
            Some(&c),
            "expected '{}' at byte {}",
            c as char,
            self.i
        );
        self.i += 1;
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.i).copied()
    }

    fn string(&mut self) -> String {
        self.eat(b'"');
        let start = self.i;
        while self.s.get(self.i).is_some_and(|c| *c != b'"') {
            assert_ne!(self.s[self.i], b'\\', "escapes are not expected");
            self.i += 1;
        }
        let out = String::from_utf8(self.s[start..self.i].to_vec()).expect("UTF-8 string");
        self.eat(b'"');
        out
    }

    fn value(&mut self) -> Json {
        match self.peek() {
            Some(b'{') => {
                self.eat(b'{');
                let mut members = Vec::new();
                if self.peek() == Some(b'}') {
                    self.eat(b'}');
                    return Json::Object(members);
                }
                loop {
                    let key = self.string();
                    self.eat(b':');
                    members.push((key, self.value()));
                    match self.peek() {
                        Some(b',') => self.eat(b','),
                        _ => break,
                    }
                }
                self.eat(b'}');
                Json::Object(members)
            }
            Some(c) if c.is_ascii_digit() => {
                let start = self.i;
                while self.s.get(self.i).is_some_and(u8::is_ascii_digit) {
                    self.i += 1;
                }
                let digits = std::str::from_utf8(&self.s[start..self.i]).expect("digits");
                Json::Number(digits.parse().expect("number fits in u64"))
            }
            other => panic!("unexpected {:?} at byte {}", other.map(char::from), self.i),
        }
    }
}

impl Json {
    fn object(&self) -> &[(String, Json)] {
        match self {
            Json::Object(m) => m,
            Json::Number(_) => panic!("expected an object, got {self:?}"),
        }
    }

    fn number(&self) -> u64 {
        match self {
            Json::Number(n) => *n,
            Json::Object(_) => panic!("expected a number"),
        }
    }

    fn get(&self, key: &str) -> &Json {
        let m = self.object();
        let hits: Vec<_> = m.iter().filter(|(k, _)| k == key).collect();
        assert_eq!(hits.len(), 1, "key {key:?} present {} times", hits.len());
        &hits[0].1
    }

    /// The members as a map, checking that no key is repeated.
    fn map(&self) -> BTreeMap<&str, &Json> {
        let m = self.object();
        let map: BTreeMap<_, _> = m.iter().map(|(k, v)| (k.as_str(), v)).collect();
        assert_eq!(map.len(), m.len(), "duplicate keys");
        map
    }
}

/// Compares two name → value maps both ways, recording every difference.
fn diff_maps(
    what: &str,
    c: &BTreeMap<&str, u64>,
    rust: &BTreeMap<&str, u64>,
    errors: &mut Vec<String>,
) {
    for (name, cv) in c {
        match rust.get(name) {
            None => errors.push(format!(
                "{what} {name}: in the C header ({cv}) but not in Rust"
            )),
            Some(rv) if rv != cv => errors.push(format!("{what} {name}: C {cv} != Rust {rv}")),
            Some(_) => {}
        }
    }
    for (name, rv) in rust {
        if !c.contains_key(name) {
            errors.push(format!(
                "{what} {name}: in Rust ({rv}) but not in the C header"
            ));
        }
    }
}

fn check_errors(errors: &[String]) {
    assert!(
        errors.is_empty(),
        "{} ABI mismatches:\n  {}",
        errors.len(),
        errors.join("\n  ")
    );
}

#[test]
fn layout_tables_match_gcc() {
    if !have_gcc() {
        return;
    }
    let text = oracle_output();
    let json = Parser::parse(&text);
    let top: Vec<&str> = json.object().iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(top, ["structs", "ioctls", "constants"]);

    let mut errors = Vec::new();

    let c_structs = json.get("structs").map();
    for (name, c) in &c_structs {
        let Some(r) = layout::find_struct(name) else {
            errors.push(format!(
                "struct {name}: printed by abi.c but not in layout::STRUCTS"
            ));
            continue;
        };
        let keys: Vec<&str> = c.object().iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["size", "align", "fields"], "struct {name}");
        for (what, rv) in [("size", r.size), ("align", r.align)] {
            let cv = c.get(what).number();
            if cv != rv as u64 {
                errors.push(format!("struct {name}: {what} C {cv} != Rust {rv}"));
            }
        }
        let c_fields: BTreeMap<&str, u64> = c
            .get("fields")
            .map()
            .into_iter()
            .map(|(k, v)| (k, v.number()))
            .collect();
        let r_fields: BTreeMap<&str, u64> = r.fields.iter().map(|(k, v)| (*k, *v as u64)).collect();
        assert_eq!(
            r_fields.len(),
            r.fields.len(),
            "duplicate field in Rust {name}"
        );
        diff_maps(
            &format!("struct {name} field"),
            &c_fields,
            &r_fields,
            &mut errors,
        );
    }
    for s in STRUCTS {
        if !c_structs.contains_key(s.name) {
            errors.push(format!(
                "struct {}: in layout::STRUCTS but not printed by abi.c",
                s.name
            ));
        }
    }

    let c_ioctls: BTreeMap<&str, u64> = json
        .get("ioctls")
        .map()
        .into_iter()
        .map(|(k, v)| (k, v.number()))
        .collect();
    let r_ioctls: BTreeMap<&str, u64> = IOCTLS.iter().map(|(k, v)| (*k, u64::from(*v))).collect();
    diff_maps("ioctl", &c_ioctls, &r_ioctls, &mut errors);

    let c_consts: BTreeMap<&str, u64> = json
        .get("constants")
        .map()
        .into_iter()
        .map(|(k, v)| (k, v.number()))
        .collect();
    let r_consts: BTreeMap<&str, u64> = CONSTANTS.iter().copied().collect();
    diff_maps("constant", &c_consts, &r_consts, &mut errors);

    check_errors(&errors);

    // Same values, same text: the Rust JSON is byte-identical to the oracle's.
    let mut rust_text = String::new();
    layout::write_json(&mut rust_text).expect("write_json");
    if rust_text != text {
        let line = rust_text
            .lines()
            .zip(text.lines())
            .position(|(a, b)| a != b);
        panic!("write_json differs from abi.c's output (first differing line: {line:?})");
    }
    assert_eq!(layout::AbiJson.to_string(), text);
}

// ---------------------------------------------------------------------------------------------
// Completeness against the header text.
// ---------------------------------------------------------------------------------------------

fn tokenize(src: &str) -> Vec<String> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'#' {
            // A line marker or pragma left by the preprocessor.
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c.is_ascii_alphanumeric() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push(src[start..i].to_string());
        } else {
            out.push((c as char).to_string());
            i += 1;
        }
    }
    out
}

#[derive(Debug)]
enum Kind {
    Plain,
    Inline(Vec<Member>),
    Named(String),
}

#[derive(Debug)]
struct Member {
    name: Option<String>,
    array: bool,
    kind: Kind,
}

struct CParser {
    t: Vec<String>,
    i: usize,
}

impl CParser {
    fn tok(&self) -> &str {
        self.t.get(self.i).map_or("", String::as_str)
    }

    fn expect(&mut self, s: &str) {
        assert_eq!(
            self.tok(),
            s,
            "header parse: expected {s:?} at token {}",
            self.i
        );
        self.i += 1;
    }

    fn skip_attributes(&mut self) {
        while self.tok() == "__attribute__" {
            self.i += 1;
            let mut depth = 0;
            loop {
                match self.tok() {
                    "(" => depth += 1,
                    ")" => depth -= 1,
                    "" => panic!("unterminated __attribute__"),
                    _ => {}
                }
                self.i += 1;
                if depth == 0 {
                    break;
                }
            }
        }
    }

    /// After `{`: members up to and including `}`.
    fn body(&mut self) -> Vec<Member> {
        let mut members = Vec::new();
        while self.tok() != "}" {
            members.push(self.member());
        }
        self.expect("}");
        members
    }

    /// Optional name and array suffix, then `;`.
    fn declarator(&mut self) -> (Option<String>, bool) {
        let mut name = None;
        let mut array = false;
        while self.tok() != ";" {
            match self.tok() {
                "[" => {
                    array = true;
                    while self.tok() != "]" {
                        self.i += 1;
                    }
                }
                "__attribute__" => {
                    self.skip_attributes();
                    continue;
                }
                "" => panic!("unterminated member declaration"),
                t if !array && (t.as_bytes()[0].is_ascii_alphabetic() || t.starts_with('_')) => {
                    name = Some(t.to_string());
                }
                _ => {}
            }
            self.i += 1;
        }
        self.expect(";");
        (name, array)
    }

    fn member(&mut self) -> Member {
        if matches!(self.tok(), "struct" | "union") {
            self.i += 1;
            let mut tag = None;
            if self.tok() != "{" {
                tag = Some(self.tok().to_string());
                self.i += 1;
            }
            let kind = if self.tok() == "{" {
                self.i += 1;
                Kind::Inline(self.body())
            } else {
                Kind::Named(tag.expect("struct member without tag or body"))
            };
            let (name, array) = self.declarator();
            Member { name, array, kind }
        } else {
            // `type name;`, `type name[N];`: the name is the last identifier before `[`/`;`.
            let (name, array) = self.declarator();
            Member {
                name,
                array,
                kind: Kind::Plain,
            }
        }
    }
}

struct Header {
    /// Top-level `struct acrn_*` definitions, in order.
    structs: Vec<(String, Vec<Member>)>,
    /// Enumerators of `enum acrn_*` definitions.
    enumerators: Vec<String>,
}

fn parse_header(src: &str) -> Header {
    let mut p = CParser {
        t: tokenize(src),
        i: 0,
    };
    let mut structs = Vec::new();
    let mut enumerators = Vec::new();
    let mut depth = 0usize;
    while p.i < p.t.len() {
        let tok = p.tok().to_string();
        let next = p.t.get(p.i + 1).cloned().unwrap_or_default();
        let after = p.t.get(p.i + 2).map_or("", String::as_str);
        if depth == 0
            && matches!(tok.as_str(), "struct" | "union")
            && next.starts_with("acrn_")
            && after == "{"
        {
            p.i += 3;
            let body = p.body();
            p.skip_attributes();
            p.expect(";");
            structs.push((next, body));
            continue;
        }
        if depth == 0 && tok == "enum" && next.starts_with("acrn_") && after == "{" {
            p.i += 3;
            let mut expect_name = true;
            while p.tok() != "}" {
                match p.tok() {
                    "," => expect_name = true,
                    t if expect_name => {
                        enumerators.push(t.to_string());
                        expect_name = false;
                    }
                    _ => {}
                }
                p.i += 1;
            }
            continue;
        }
        match tok.as_str() {
            "{" => depth += 1,
            "}" => depth = depth.saturating_sub(1),
            _ => {}
        }
        p.i += 1;
    }
    Header {
        structs,
        enumerators,
    }
}

/// Member paths by the rules of `acrn_uapi::layout` (see its module documentation).
fn flatten(members: &[Member], prefix: &str, header: &Header, out: &mut Vec<String>) {
    for m in members {
        let Some(name) = &m.name else {
            // Anonymous struct/union: its members are named directly.
            if let Kind::Inline(inner) = &m.kind {
                flatten(inner, prefix, header, out);
            }
            continue;
        };
        let path = format!("{prefix}{name}");
        out.push(path.clone());
        let child_prefix = if m.array {
            format!("{path}[].")
        } else {
            format!("{path}.")
        };
        match &m.kind {
            Kind::Plain => {}
            Kind::Inline(inner) => flatten(inner, &child_prefix, header, out),
            Kind::Named(tag) => {
                let def = header.structs.iter().find(|(n, _)| n == tag);
                let (_, inner) =
                    def.unwrap_or_else(|| panic!("struct {tag} is not defined in the header"));
                flatten(inner, &child_prefix, header, out);
            }
        }
    }
}

/// Describes how two name lists differ: names missing on either side, or else the order.
fn list_diff(header: &[&str], rust: &[&str]) -> String {
    let missing: Vec<_> = header.iter().filter(|n| !rust.contains(n)).collect();
    let extra: Vec<_> = rust.iter().filter(|n| !header.contains(n)).collect();
    if missing.is_empty() && extra.is_empty() {
        format!("same names, different order:\n    header {header:?}\n    Rust   {rust:?}")
    } else {
        format!(
            "in the header but not in Rust {missing:?}; in Rust but not in the header {extra:?}"
        )
    }
}

fn header_file(dir: &Path) -> PathBuf {
    let src = dir.join("header.c");
    std::fs::write(&src, "#include <linux/ioctl.h>\n#include <linux/acrn.h>\n")
        .expect("write header.c");
    src
}

#[test]
fn layout_tables_cover_the_whole_header() {
    if !have_gcc() {
        return;
    }
    let dir = tmp_dir();
    let src = header_file(&dir);
    let pre = run(Command::new("gcc").args(["-std=c11", "-E"]).arg(&src));
    let header = parse_header(&pre);
    let mut errors = Vec::new();

    // Structs, in header order, with every member path in declaration order.
    let h_names: Vec<&str> = header.structs.iter().map(|(n, _)| n.as_str()).collect();
    let r_names: Vec<&str> = STRUCTS.iter().map(|s| s.name).collect();
    if h_names != r_names {
        errors.push(format!("structs: {}", list_diff(&h_names, &r_names)));
    }
    for (name, members) in &header.structs {
        let mut paths = Vec::new();
        flatten(members, "", &header, &mut paths);
        let Some(r) = layout::find_struct(name) else {
            continue;
        };
        let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
        let r_paths: Vec<&str> = r.fields.iter().map(|(p, _)| *p).collect();
        if paths != r_paths {
            errors.push(format!(
                "struct {name} members: {}",
                list_diff(&paths, &r_paths)
            ));
        }
    }

    // Macros (ACRN_*, PMCMD_*) and enumerators.
    let defines = run(Command::new("gcc")
        .args(["-std=c11", "-E", "-dM"])
        .arg(&src));
    let mut h_ioctls = Vec::new();
    let mut h_consts = header.enumerators.clone();
    for line in defines.lines() {
        let Some(rest) = line.strip_prefix("#define ") else {
            continue;
        };
        let name = rest.split([' ', '(']).next().unwrap_or_default();
        if name.starts_with("ACRN_IOCTL_") && name != "ACRN_IOCTL_TYPE" {
            h_ioctls.push(name.to_string());
        } else if name.starts_with("ACRN_") || name.starts_with("PMCMD_") {
            h_consts.push(name.to_string());
        }
    }
    h_ioctls.sort();
    h_consts.sort();
    let h_ioctls: Vec<&str> = h_ioctls.iter().map(String::as_str).collect();
    let h_consts: Vec<&str> = h_consts.iter().map(String::as_str).collect();
    let mut r_ioctls: Vec<&str> = IOCTLS.iter().map(|(n, _)| *n).collect();
    let mut r_consts: Vec<&str> = CONSTANTS.iter().map(|(n, _)| *n).collect();
    r_ioctls.sort_unstable();
    r_consts.sort_unstable();
    if h_ioctls != r_ioctls {
        errors.push(format!("ioctls: {}", list_diff(&h_ioctls, &r_ioctls)));
    }
    if h_consts != r_consts {
        errors.push(format!("constants: {}", list_diff(&h_consts, &r_consts)));
    }
    check_errors(&errors);

    // The parser must have seen the whole header, or the comparison above proves little.
    assert!(header.structs.len() >= 20 && header.enumerators.len() == 4 && h_ioctls.len() >= 25);
}

/// The header parser itself, on a made-up header exercising every rule.
#[test]
fn header_parser_applies_the_naming_rules() {
    let src = "
        typedef struct { unsigned char b[16]; } guid_t;
        struct acrn_inner { int a; int b[2]; };
        struct acrn_outer {
            guid_t id;
            union { int x; long y; };
            struct acrn_inner in;
            struct { int p; struct acrn_inner q; } arr[3];
            union { int v; struct { short lo; short hi; } parts; } u;
        } __attribute__((aligned(8)));
        enum acrn_e { ACRN_E0, ACRN_E1 = 5, };
    ";
    let header = parse_header(src);
    assert_eq!(header.enumerators, ["ACRN_E0", "ACRN_E1"]);
    let names: Vec<&str> = header.structs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["acrn_inner", "acrn_outer"]);
    let mut paths = Vec::new();
    flatten(&header.structs[1].1, "", &header, &mut paths);
    let want = [
        "id",
        "x",
        "y",
        "in",
        "in.a",
        "in.b",
        "arr",
        "arr[].p",
        "arr[].q",
        "arr[].q.a",
        "arr[].q.b",
        "u",
        "u.v",
        "u.parts",
        "u.parts.lo",
        "u.parts.hi",
    ];
    assert_eq!(paths, want);
}
