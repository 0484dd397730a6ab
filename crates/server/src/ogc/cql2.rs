//! CQL2 filters (OGC API – Features Part 3) in text and JSON, turned into the SQL boolean
//! expression the engine checks and plans like REST `where=`.
//!
//! What is read: the Basic CQL2 class (comparisons, `AND`/`OR`/`NOT`, `IS [NOT] NULL`,
//! property names, string, number, boolean, `DATE(…)` and `TIMESTAMP(…)` literals), the Advanced
//! Comparison Operators (`LIKE`, `BETWEEN`, `IN`) and the Basic Spatial Functions
//! (`S_INTERSECTS` of a geometry property and a WKT or `BBOX(…)` literal, or a GeoJSON geometry
//! in JSON). Nothing is passed on as text: every property becomes a quoted identifier, every
//! value a literal written here, and a geometry literal is parsed, taken to the column's CRS
//! and written again. The engine then finds unknown and hidden columns (the same error for
//! both) and evaluates on released values, so a filter on a masked column sees the mask.

use std::collections::HashMap;

use geo::Geometry;
use geozero::{ToGeo, ToWkt};
use serde_json::Value;
use tverr_access::geo::{Crs, bbox_polygon, transform_geometry};

/// The deepest nesting a filter may have (parentheses, `NOT`s, JSON arrays and objects).
pub const MAX_DEPTH: usize = 64;

/// The longest filter, in bytes.
pub const MAX_FILTER_BYTES: usize = 64 * 1024;

/// What a filter is read against: the geometry columns and their CRS, and the CRS of the
/// filter's geometry literals (`filter-crs`), with EPSG:4326's latitude-first order when asked.
pub struct Context<'a> {
    /// Geometry columns the caller may read, with their stored CRS.
    pub geometry: &'a HashMap<String, Crs>,
    /// The literals' CRS.
    pub crs: Crs,
    /// Literals are latitude first (EPSG:4326 as the EPSG defines it).
    pub lat_lon: bool,
}

/// A filter that cannot be read, with where (a character position in text).
#[derive(Debug, PartialEq)]
pub struct FilterError(pub String);

impl std::fmt::Display for FilterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

type Result<T> = std::result::Result<T, FilterError>;

fn fail<T>(text: impl Into<String>) -> Result<T> {
    Err(FilterError(text.into()))
}

/// A CQL2 text filter as SQL.
pub fn text_to_sql(text: &str, cx: &Context) -> Result<String> {
    if text.len() > MAX_FILTER_BYTES {
        return fail(format!("the filter is longer than {MAX_FILTER_BYTES} bytes"));
    }
    let tokens = tokenize(text)?;
    let mut p = Parser { tokens, at: 0, depth: 0, cx };
    let sql = p.or()?;
    if let Some(t) = p.tokens.get(p.at) {
        return fail(format!("at character {}: expected the end of the filter, found {}", t.pos + 1, t.kind.describe()));
    }
    Ok(sql)
}

/// A CQL2 JSON filter as SQL.
pub fn json_to_sql(text: &str, cx: &Context) -> Result<String> {
    if text.len() > MAX_FILTER_BYTES {
        return fail(format!("the filter is longer than {MAX_FILTER_BYTES} bytes"));
    }
    let value: Value = serde_json::from_str(text)
        .map_err(|e| FilterError(format!("not JSON at line {}, column {}: {}", e.line(), e.column(), json_reason(&e))))?;
    let mut j = Json { cx, depth: 0 };
    j.boolean(&value)
}

/// serde_json's reason without its position (which the message gives already).
fn json_reason(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.find(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// A property name as a quoted SQL identifier.
fn identifier(name: &str) -> Result<String> {
    if name.is_empty() || name.chars().any(char::is_control) {
        return fail("a property name is empty or holds a control character");
    }
    Ok(format!("\"{}\"", name.replace('"', "\"\"")))
}

/// A text as a SQL string literal.
fn string(text: &str) -> Result<String> {
    if text.contains('\0') {
        return fail("a string holds a NUL character");
    }
    Ok(format!("'{}'", text.replace('\'', "''")))
}

/// A number as SQL, checked to be one.
fn number(text: &str) -> Result<String> {
    match text.parse::<f64>() {
        Ok(n) if n.is_finite() => Ok(text.to_string()),
        _ => fail(format!("{text:?} is not a number")),
    }
}

fn date(text: &str) -> Result<String> {
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| FilterError(format!("DATE({text:?}): expected YYYY-MM-DD")))?;
    Ok(format!("DATE '{text}'"))
}

fn timestamp(text: &str) -> Result<String> {
    let at = chrono::DateTime::parse_from_rfc3339(text)
        .map_err(|_| FilterError(format!("TIMESTAMP({text:?}): expected an RFC 3339 time such as 2024-05-17T12:00:00Z")))?;
    Ok(format!("TIMESTAMP '{}'", at.with_timezone(&chrono::Utc).format("%Y-%m-%dT%H:%M:%S%.fZ")))
}

impl Context<'_> {
    /// `S_INTERSECTS(property, literal)` as SQL: the literal in the property's CRS.
    fn intersects(&self, property: &str, literal: Literal) -> Result<String> {
        let Some(crs) = self.geometry.get(property) else {
            return fail(format!("S_INTERSECTS: {property:?} is not a geometry property you may read"));
        };
        let shape = match literal {
            Literal::Shape(mut shape) => {
                if self.lat_lon {
                    geo::MapCoordsInPlace::map_coords_in_place(&mut shape, |c| geo::Coord { x: c.y, y: c.x });
                }
                transform_geometry(&mut shape, self.crs, *crs).map_err(|e| FilterError(format!("S_INTERSECTS: {e}")))?;
                shape
            }
            Literal::Box([a, b, c, d]) => {
                let [a, b, c, d] = if self.lat_lon { [b, a, d, c] } else { [a, b, c, d] };
                bbox_polygon(a, b, c, d, self.crs, *crs).map_err(|e| FilterError(format!("S_INTERSECTS: {e}")))?
            }
        };
        let wkt = shape.to_wkt().map_err(|e| FilterError(format!("S_INTERSECTS: {e}")))?;
        Ok(format!("ST_Intersects({}, ST_GeomFromText({}))", identifier(property)?, string(&wkt)?))
    }

    fn bbox(&self, n: &[f64]) -> Result<Literal> {
        let [a, b, c, d] = match n.len() {
            4 => [n[0], n[1], n[2], n[3]],
            6 => [n[0], n[1], n[3], n[4]],
            k => return fail(format!("BBOX takes 4 or 6 numbers, not {k}")),
        };
        if a > c || b > d {
            return fail("BBOX: the lower corner must come first (a box across the antimeridian is not supported)");
        }
        Ok(Literal::Box([a, b, c, d]))
    }
}

/// A geometry literal: a shape, or a box (kept as numbers, so it is cut to where the column's
/// CRS holds before it is taken there).
enum Literal {
    Shape(Geometry),
    Box([f64; 4]),
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Word(String),
    Quoted(String),
    Str(String),
    Num(String),
    Op(&'static str),
    Open,
    Close,
    Comma,
    /// A WKT geometry literal, whole.
    Wkt(String),
}

impl Kind {
    fn describe(&self) -> String {
        match self {
            Kind::Word(w) => format!("«{w}»"),
            Kind::Quoted(w) => format!("the property \"{w}\""),
            Kind::Str(_) => "a string".into(),
            Kind::Num(n) => format!("the number {n}"),
            Kind::Op(o) => format!("«{o}»"),
            Kind::Open => "«(»".into(),
            Kind::Close => "«)»".into(),
            Kind::Comma => "«,»".into(),
            Kind::Wkt(_) => "a geometry".into(),
        }
    }
}

#[derive(Debug)]
struct Token {
    kind: Kind,
    /// Character position.
    pos: usize,
}

const WKT_WORDS: [&str; 7] = ["POINT", "LINESTRING", "POLYGON", "MULTIPOINT", "MULTILINESTRING", "MULTIPOLYGON", "GEOMETRYCOLLECTION"];

fn tokenize(text: &str) -> Result<Vec<Token>> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let pos = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let kind = match c {
            '(' => {
                i += 1;
                Kind::Open
            }
            ')' => {
                i += 1;
                Kind::Close
            }
            ',' => {
                i += 1;
                Kind::Comma
            }
            '=' => {
                i += 1;
                Kind::Op("=")
            }
            '<' | '>' => {
                let next = chars.get(i + 1).copied();
                let (op, len) = match (c, next) {
                    ('<', Some('>')) => ("<>", 2),
                    ('<', Some('=')) => ("<=", 2),
                    ('>', Some('=')) => (">=", 2),
                    ('<', _) => ("<", 1),
                    _ => (">", 1),
                };
                i += len;
                Kind::Op(op)
            }
            '\'' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return fail(format!("at character {}: the string is not closed", pos + 1)),
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            s.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(ch) => {
                            s.push(*ch);
                            i += 1;
                        }
                    }
                }
                Kind::Str(s)
            }
            '"' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return fail(format!("at character {}: the quoted property name is not closed", pos + 1)),
                        Some('"') if chars.get(i + 1) == Some(&'"') => {
                            s.push('"');
                            i += 2;
                        }
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some(ch) => {
                            s.push(*ch);
                            i += 1;
                        }
                    }
                }
                Kind::Quoted(s)
            }
            c if c.is_ascii_digit()
                || ((c == '-' || c == '+' || c == '.') && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit() || *d == '.')) =>
            {
                let start = i;
                i += 1;
                while i < chars.len()
                    && (chars[i].is_ascii_digit()
                        || matches!(chars[i], '.' | 'e' | 'E')
                        || (matches!(chars[i], '-' | '+') && matches!(chars[i - 1], 'e' | 'E')))
                {
                    i += 1;
                }
                let n: String = chars[start..i].iter().collect();
                number(&n).map_err(|_| FilterError(format!("at character {}: {n:?} is not a number", pos + 1)))?;
                Kind::Num(n)
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '.' | ':')) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let upper = word.to_ascii_uppercase();
                if WKT_WORDS.contains(&upper.as_str()) {
                    // The literal runs to the parenthesis that closes its first.
                    let mut j = i;
                    while j < chars.len() && chars[j] != '(' {
                        if !(chars[j].is_whitespace() || chars[j].eq_ignore_ascii_case(&'z')) {
                            return fail(format!("at character {}: expected «(» after {upper}", j + 1));
                        }
                        j += 1;
                    }
                    let mut depth = 0usize;
                    loop {
                        match chars.get(j) {
                            None => return fail(format!("at character {}: the {upper} literal is not closed", pos + 1)),
                            Some('(') => {
                                depth += 1;
                                if depth > MAX_DEPTH {
                                    return fail(format!("at character {}: the geometry is nested more than {MAX_DEPTH} deep", j + 1));
                                }
                            }
                            Some(')') => {
                                depth -= 1;
                                if depth == 0 {
                                    j += 1;
                                    break;
                                }
                            }
                            _ => {}
                        }
                        j += 1;
                    }
                    i = j;
                    Kind::Wkt(chars[start..j].iter().collect())
                } else {
                    Kind::Word(word)
                }
            }
            other => return fail(format!("at character {}: unexpected {other:?}", pos + 1)),
        };
        out.push(Token { kind, pos });
    }
    Ok(out)
}

struct Parser<'a> {
    tokens: Vec<Token>,
    at: usize,
    depth: usize,
    cx: &'a Context<'a>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Kind> {
        self.tokens.get(self.at).map(|t| &t.kind)
    }

    fn here(&self) -> String {
        match self.tokens.get(self.at) {
            Some(t) => format!("at character {}", t.pos + 1),
            None => "at the end of the filter".into(),
        }
    }

    fn found(&self) -> String {
        match self.tokens.get(self.at) {
            Some(t) => t.kind.describe(),
            None => "nothing".into(),
        }
    }

    fn keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Kind::Word(w)) if w.eq_ignore_ascii_case(word))
    }

    fn eat_keyword(&mut self, word: &str) -> bool {
        let yes = self.keyword(word);
        if yes {
            self.at += 1;
        }
        yes
    }

    fn expect(&mut self, kind: Kind, what: &str) -> Result<()> {
        if self.peek() == Some(&kind) {
            self.at += 1;
            Ok(())
        } else {
            fail(format!("{}: expected {what}, found {}", self.here(), self.found()))
        }
    }

    fn deeper(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH { fail(format!("{}: the filter is nested more than {MAX_DEPTH} deep", self.here())) } else { Ok(()) }
    }

    fn or(&mut self) -> Result<String> {
        self.deeper()?;
        let mut parts = vec![self.and()?];
        while self.eat_keyword("OR") {
            parts.push(self.and()?);
        }
        self.depth -= 1;
        Ok(if parts.len() == 1 { parts.remove(0) } else { format!("({})", parts.join(" OR ")) })
    }

    fn and(&mut self) -> Result<String> {
        let mut parts = vec![self.not()?];
        while self.eat_keyword("AND") {
            parts.push(self.not()?);
        }
        Ok(if parts.len() == 1 { parts.remove(0) } else { format!("({})", parts.join(" AND ")) })
    }

    fn not(&mut self) -> Result<String> {
        if self.eat_keyword("NOT") {
            self.deeper()?;
            let inner = self.not()?;
            self.depth -= 1;
            return Ok(format!("(NOT {inner})"));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<String> {
        if self.peek() == Some(&Kind::Open) {
            self.at += 1;
            let inner = self.or()?;
            self.expect(Kind::Close, "«)»")?;
            return Ok(inner);
        }
        if self.keyword("S_INTERSECTS") {
            return self.spatial();
        }
        if let Some(Kind::Word(w)) = self.peek() {
            let upper = w.to_ascii_uppercase();
            if upper.starts_with("S_") || upper.starts_with("T_") || upper.starts_with("A_") {
                return fail(format!("{}: {upper} is not supported; of the spatial functions, only S_INTERSECTS is", self.here()));
            }
            if (upper == "TRUE" || upper == "FALSE") && !self.comparison_follows(1) {
                self.at += 1;
                return Ok(upper);
            }
        }
        self.predicate()
    }

    /// Whether the token `ahead` of here starts a comparison.
    fn comparison_follows(&self, ahead: usize) -> bool {
        match self.tokens.get(self.at + ahead).map(|t| &t.kind) {
            Some(Kind::Op(_)) => true,
            Some(Kind::Word(w)) => ["LIKE", "BETWEEN", "IN", "IS", "NOT"].iter().any(|k| w.eq_ignore_ascii_case(k)),
            _ => false,
        }
    }

    fn predicate(&mut self) -> Result<String> {
        let left = self.scalar()?;
        if let Some(Kind::Op(op)) = self.peek() {
            let op = *op;
            self.at += 1;
            let right = self.scalar()?;
            return Ok(format!("({left} {op} {right})"));
        }
        if self.eat_keyword("IS") {
            let negated = self.eat_keyword("NOT");
            if !self.eat_keyword("NULL") {
                return fail(format!("{}: expected NULL after IS, found {}", self.here(), self.found()));
            }
            return Ok(format!("({left} IS {}NULL)", if negated { "NOT " } else { "" }));
        }
        let negated = self.eat_keyword("NOT");
        let not = if negated { "NOT " } else { "" };
        if self.eat_keyword("LIKE") {
            let pattern = self.scalar()?;
            return Ok(format!("({left} {not}LIKE {pattern})"));
        }
        if self.eat_keyword("BETWEEN") {
            let low = self.scalar()?;
            if !self.eat_keyword("AND") {
                return fail(format!("{}: expected AND in BETWEEN, found {}", self.here(), self.found()));
            }
            let high = self.scalar()?;
            return Ok(format!("({left} {not}BETWEEN {low} AND {high})"));
        }
        if self.eat_keyword("IN") {
            self.expect(Kind::Open, "«(» after IN")?;
            let mut items = vec![self.scalar()?];
            while self.peek() == Some(&Kind::Comma) {
                self.at += 1;
                items.push(self.scalar()?);
            }
            self.expect(Kind::Close, "«)» after the IN list")?;
            return Ok(format!("({left} {not}IN ({}))", items.join(", ")));
        }
        fail(format!("{}: expected a comparison (=, <>, <, <=, >, >=, LIKE, BETWEEN, IN or IS NULL), found {}", self.here(), self.found()))
    }

    fn scalar(&mut self) -> Result<String> {
        let here = self.here();
        let Some(token) = self.tokens.get(self.at) else { return fail(format!("{here}: expected a property or a value, found nothing")) };
        let kind = token.kind.clone();
        self.at += 1;
        match kind {
            Kind::Str(s) => string(&s),
            Kind::Num(n) => Ok(n),
            Kind::Quoted(q) => identifier(&q),
            Kind::Word(w) => {
                let upper = w.to_ascii_uppercase();
                match upper.as_str() {
                    "TRUE" | "FALSE" => Ok(upper),
                    "DATE" | "TIMESTAMP" if self.peek() == Some(&Kind::Open) => {
                        self.at += 1;
                        let Some(Kind::Str(s)) = self.peek().cloned() else {
                            return fail(format!(
                                "{}: expected a quoted {upper} such as '2024-05-17', found {}",
                                self.here(),
                                self.found()
                            ));
                        };
                        self.at += 1;
                        self.expect(Kind::Close, "«)»")?;
                        if upper == "DATE" { date(&s) } else { timestamp(&s) }
                    }
                    "AND" | "OR" | "NOT" | "LIKE" | "BETWEEN" | "IN" | "IS" | "NULL" => {
                        fail(format!("{here}: expected a property or a value, found «{w}»"))
                    }
                    _ if self.peek() == Some(&Kind::Open) => fail(format!("{here}: the function {w} is not supported")),
                    _ => identifier(&w),
                }
            }
            other => fail(format!("{here}: expected a property or a value, found {}", other.describe())),
        }
    }

    fn spatial(&mut self) -> Result<String> {
        self.at += 1;
        self.expect(Kind::Open, "«(» after S_INTERSECTS")?;
        let first = self.spatial_argument()?;
        self.expect(Kind::Comma, "«,» between the two geometries")?;
        let second = self.spatial_argument()?;
        self.expect(Kind::Close, "«)» after the second geometry")?;
        match (first, second) {
            (Spatial::Property(p), Spatial::Shape(g)) | (Spatial::Shape(g), Spatial::Property(p)) => self.cx.intersects(&p, g),
            _ => fail("S_INTERSECTS: give one geometry property and one geometry literal"),
        }
    }

    fn spatial_argument(&mut self) -> Result<Spatial> {
        let here = self.here();
        let Some(token) = self.tokens.get(self.at) else { return fail(format!("{here}: expected a geometry, found nothing")) };
        let kind = token.kind.clone();
        self.at += 1;
        match kind {
            Kind::Wkt(text) => {
                wkt_rings(&text).map_err(|e| FilterError(format!("{here}: {e}")))?;
                let shape =
                    geozero::wkt::Wkt(text.as_str()).to_geo().map_err(|e| FilterError(format!("{here}: not a WKT geometry: {e}")))?;
                Ok(Spatial::Shape(Literal::Shape(shape)))
            }
            Kind::Word(w) if w.eq_ignore_ascii_case("BBOX") => {
                self.expect(Kind::Open, "«(» after BBOX")?;
                let mut n = Vec::new();
                loop {
                    let signed = match self.peek() {
                        Some(Kind::Num(x)) => x.parse::<f64>().ok(),
                        _ => None,
                    };
                    let Some(x) = signed else {
                        return fail(format!("{}: expected a number in BBOX, found {}", self.here(), self.found()));
                    };
                    n.push(x);
                    self.at += 1;
                    if self.peek() == Some(&Kind::Comma) {
                        self.at += 1;
                    } else {
                        break;
                    }
                }
                self.expect(Kind::Close, "«)» after the BBOX numbers")?;
                Ok(Spatial::Shape(self.cx.bbox(&n)?))
            }
            Kind::Word(w) => Ok(Spatial::Property(w)),
            Kind::Quoted(q) => Ok(Spatial::Property(q)),
            other => fail(format!("{here}: expected a geometry property or literal, found {}", other.describe())),
        }
    }
}

enum Spatial {
    Property(String),
    Shape(Literal),
}

struct Json<'a> {
    cx: &'a Context<'a>,
    depth: usize,
}

impl Json<'_> {
    fn deeper(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH { fail(format!("the filter is nested more than {MAX_DEPTH} deep")) } else { Ok(()) }
    }

    fn op<'v>(&self, v: &'v Value) -> Result<(String, &'v [Value])> {
        let Some(o) = v.as_object() else {
            return fail(format!("expected an operation {{\"op\": …, \"args\": […]}}, found {}", shape_of(v)));
        };
        let Some(op) = o.get("op").and_then(Value::as_str) else { return fail("an operation has no \"op\" text") };
        let Some(args) = o.get("args").and_then(Value::as_array) else {
            return fail(format!("the operation {op:?} has no \"args\" array"));
        };
        if let Some(k) = o.keys().find(|k| *k != "op" && *k != "args") {
            return fail(format!("the operation {op:?} has an unknown member {k:?}"));
        }
        Ok((op.to_ascii_lowercase(), args.as_slice()))
    }

    fn boolean(&mut self, v: &Value) -> Result<String> {
        if let Some(b) = v.as_bool() {
            return Ok(if b { "TRUE" } else { "FALSE" }.into());
        }
        self.deeper()?;
        let (op, args) = self.op(v)?;
        let count = |n: usize| -> Result<()> {
            if args.len() == n { Ok(()) } else { fail(format!("{op}: takes {n} arguments, found {}", args.len())) }
        };
        let sql = match op.as_str() {
            "and" | "or" => {
                if args.len() < 2 {
                    return fail(format!("{op}: takes at least 2 arguments"));
                }
                let parts = args.iter().map(|a| self.boolean(a)).collect::<Result<Vec<_>>>()?;
                format!("({})", parts.join(if op == "and" { " AND " } else { " OR " }))
            }
            "not" => {
                count(1)?;
                format!("(NOT {})", self.boolean(&args[0])?)
            }
            "=" | "<>" | "<" | "<=" | ">" | ">=" => {
                count(2)?;
                format!("({} {op} {})", self.scalar(&args[0])?, self.scalar(&args[1])?)
            }
            "like" => {
                count(2)?;
                format!("({} LIKE {})", self.scalar(&args[0])?, self.scalar(&args[1])?)
            }
            "between" => {
                count(3)?;
                format!("({} BETWEEN {} AND {})", self.scalar(&args[0])?, self.scalar(&args[1])?, self.scalar(&args[2])?)
            }
            "in" => {
                count(2)?;
                let Some(list) = args[1].as_array() else { return fail("in: the second argument must be an array") };
                if list.is_empty() {
                    return fail("in: the list is empty");
                }
                let items = list.iter().map(|a| self.scalar(a)).collect::<Result<Vec<_>>>()?;
                format!("({} IN ({}))", self.scalar(&args[0])?, items.join(", "))
            }
            "isnull" => {
                count(1)?;
                format!("({} IS NULL)", self.scalar(&args[0])?)
            }
            "s_intersects" => {
                count(2)?;
                match (property(&args[0]), property(&args[1])) {
                    (Some(p), None) => self.cx.intersects(p, self.shape(&args[1])?)?,
                    (None, Some(p)) => self.cx.intersects(p, self.shape(&args[0])?)?,
                    _ => return fail("s_intersects: give one geometry property and one geometry literal"),
                }
            }
            other if other.starts_with("s_") || other.starts_with("t_") || other.starts_with("a_") => {
                return fail(format!("{other} is not supported; of the spatial functions, only s_intersects is"));
            }
            other => return fail(format!("unknown operation {other:?}")),
        };
        self.depth -= 1;
        Ok(sql)
    }

    fn scalar(&mut self, v: &Value) -> Result<String> {
        match v {
            Value::String(s) => string(s),
            Value::Number(n) => number(&n.to_string()),
            Value::Bool(b) => Ok(if *b { "TRUE" } else { "FALSE" }.into()),
            Value::Object(o) => {
                if let Some(p) = o.get("property").and_then(Value::as_str) {
                    identifier(p)
                } else if let Some(d) = o.get("date").and_then(Value::as_str) {
                    date(d)
                } else if let Some(t) = o.get("timestamp").and_then(Value::as_str) {
                    timestamp(t)
                } else {
                    fail(format!("expected a property, a value, a date or a timestamp, found {}", shape_of(v)))
                }
            }
            other => fail(format!("expected a property or a value, found {}", shape_of(other))),
        }
    }

    fn shape(&self, v: &Value) -> Result<Literal> {
        if let Some(b) = v.get("bbox").and_then(Value::as_array) {
            let n: Option<Vec<f64>> = b.iter().map(Value::as_f64).collect();
            let Some(n) = n else { return fail("bbox: expected numbers") };
            return self.cx.bbox(&n);
        }
        geojson_rings(v, 0)?;
        let text = v.to_string();
        geozero::geojson::GeoJson(&text).to_geo().map(Literal::Shape).map_err(|e| FilterError(format!("not a GeoJSON geometry: {e}")))
    }
}

/// Checks what a geometry reader would quietly mend: a polygon's rings must be closed and hold
/// four positions or more, a line two or more (WKT text: each innermost list by the kind of
/// geometry it belongs to).
fn wkt_rings(text: &str) -> std::result::Result<(), String> {
    let upper = text.to_ascii_uppercase();
    let mut kind = String::new();
    let mut word = String::new();
    let mut start = None;
    for (i, b) in upper.bytes().enumerate() {
        match b {
            b'A'..=b'Z' => word.push(b as char),
            b'(' => {
                if !word.is_empty() && word != "Z" && word != "M" && word != "ZM" && word != "EMPTY" {
                    kind = std::mem::take(&mut word);
                }
                word.clear();
                start = Some(i + 1);
            }
            b')' => {
                word.clear();
                if let Some(from) = start.take() {
                    let positions: Vec<&str> = upper[from..i].split(',').map(str::trim).collect();
                    if kind.ends_with("POLYGON") && (positions.len() < 4 || positions.first() != positions.last()) {
                        return Err(format!("a ring of the {kind} is not closed, or has fewer than four positions"));
                    }
                    if kind.ends_with("LINESTRING") && positions.len() < 2 {
                        return Err(format!("a line of the {kind} has fewer than two positions"));
                    }
                }
            }
            _ => {
                if !b.is_ascii_whitespace() {
                    word.clear();
                }
            }
        }
    }
    Ok(())
}

/// [`wkt_rings`] for a GeoJSON geometry.
fn geojson_rings(v: &Value, depth: usize) -> Result<()> {
    if depth > MAX_DEPTH {
        return fail(format!("the geometry is nested more than {MAX_DEPTH} deep"));
    }
    let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
    let list = |c: Option<&Value>| c.and_then(Value::as_array).cloned().unwrap_or_default();
    let ring = |r: &Value| -> Result<()> {
        let points = list(Some(r));
        if points.len() < 4 || points.first() != points.last() {
            return fail(format!("a ring of the {kind} is not closed, or has fewer than four positions"));
        }
        Ok(())
    };
    let coordinates = v.get("coordinates");
    match kind {
        "Polygon" => list(coordinates).iter().try_for_each(ring),
        "MultiPolygon" => list(coordinates).iter().try_for_each(|p| list(Some(p)).iter().try_for_each(ring)),
        "LineString" if list(coordinates).len() < 2 => fail("a line of the LineString has fewer than two positions"),
        "MultiLineString" if list(coordinates).iter().any(|l| list(Some(l)).len() < 2) => {
            fail("a line of the MultiLineString has fewer than two positions")
        }
        "GeometryCollection" => list(v.get("geometries")).iter().try_for_each(|g| geojson_rings(g, depth + 1)),
        _ => Ok(()),
    }
}

fn property(v: &Value) -> Option<&str> {
    v.as_object().and_then(|o| o.get("property")).and_then(Value::as_str)
}

fn shape_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx() -> HashMap<String, Crs> {
        HashMap::from([("geometry".to_string(), Crs::Utm33)])
    }

    fn text(f: &str) -> Result<String> {
        let g = cx();
        text_to_sql(f, &Context { geometry: &g, crs: Crs::Wgs84, lat_lon: false })
    }

    fn json(f: &str) -> Result<String> {
        let g = cx();
        json_to_sql(f, &Context { geometry: &g, crs: Crs::Wgs84, lat_lon: false })
    }

    #[test]
    fn basic_cql2_text_becomes_sql() {
        assert_eq!(text("kapasitet > 50").unwrap(), "(\"kapasitet\" > 50)");
        assert_eq!(text("navn = 'O''Neil' AND NOT (alder <= -1.5e2)").unwrap(), "((\"navn\" = 'O''Neil') AND (NOT (\"alder\" <= -1.5e2)))");
        assert_eq!(text("a IS NOT NULL or b is null").unwrap(), "((\"a\" IS NOT NULL) OR (\"b\" IS NULL))");
        assert_eq!(text("\"odd \"\" name\" <> true").unwrap(), "(\"odd \"\" name\" <> TRUE)");
        assert_eq!(text("d >= DATE('2020-01-31')").unwrap(), "(\"d\" >= DATE '2020-01-31')");
        assert_eq!(text("t < TIMESTAMP('2020-01-31T10:00:00+01:00')").unwrap(), "(\"t\" < TIMESTAMP '2020-01-31T09:00:00Z')");
        assert_eq!(
            text("navn LIKE 'A%' AND k BETWEEN 1 AND 5 AND b NOT IN ('x', 'y')").unwrap(),
            "((\"navn\" LIKE 'A%') AND (\"k\" BETWEEN 1 AND 5) AND (\"b\" NOT IN ('x', 'y')))"
        );
    }

    #[test]
    fn nothing_passes_as_text() {
        // A quote or a comment in a value stays inside the literal; a name stays a name.
        assert_eq!(text("navn = 'x'' OR 1=1 --'").unwrap(), "(\"navn\" = 'x'' OR 1=1 --')");
        assert!(text("navn = 'x' ; DROP TABLE t").unwrap_err().0.contains("character 12"));
        assert!(text("length(navn) > 3").unwrap_err().0.contains("not supported"));
        assert!(text("navn = 'open").unwrap_err().0.contains("not closed"));
        assert!(text("DATE('2020-13-01') = d").unwrap_err().0.contains("YYYY-MM-DD"));
        assert!(text("a > ").unwrap_err().0.contains("at the end"));
        assert!(text("a = 1 OR").unwrap_err().0.contains("at the end"));
        assert!(text("a").unwrap_err().0.contains("expected a comparison"));
    }

    #[test]
    fn deep_nesting_is_refused_not_followed() {
        let deep = format!("{}a = 1{}", "(".repeat(100_000), ")".repeat(100_000));
        assert!(text(&deep).is_err());
        let nots = format!("{}a = 1", "NOT ".repeat(1_000));
        assert!(text(&format!("{}a = 1{}", "(".repeat(1_000), ")".repeat(1_000))).unwrap_err().0.contains("nested"));
        assert!(text(&"NOT ".repeat(100_000)).unwrap_err().0.contains("longer than"));
        assert!(text(&nots).unwrap_err().0.contains("nested"));
        let mut j = String::from("{\"op\":\"=\",\"args\":[{\"property\":\"a\"},1]}");
        for _ in 0..100 {
            j = format!("{{\"op\":\"not\",\"args\":[{j}]}}");
        }
        assert!(json(&j).is_err(), "serde_json stops at a depth of 128, before the 64 operations here");
        let huge = "[".repeat(100_000);
        assert!(json(&huge).is_err());
    }

    #[test]
    fn spatial_literals_are_taken_to_the_column_crs() {
        let sql = text("S_INTERSECTS(geometry, BBOX(11.0, 60.7, 11.2, 60.85))").unwrap();
        assert!(sql.starts_with("ST_Intersects(\"geometry\", ST_GeomFromText('POLYGON(("), "{sql}");
        // Hamar lies near easting 290 000 to 310 000 in zone 33.
        assert!(sql.contains("6730") || sql.contains("6740") || sql.contains("6750"), "{sql}");
        let point = text("S_INTERSECTS(POINT(11.07 60.79), geometry)").unwrap();
        assert!(point.contains("POINT("), "{point}");
        assert!(text("S_INTERSECTS(navn, POINT(11 60))").unwrap_err().0.contains("not a geometry property"));
        assert!(text("S_INTERSECTS(geometry, POINT(11 60)").unwrap_err().0.contains("«)»"));
        assert!(text("S_CONTAINS(geometry, POINT(11 60))").unwrap_err().0.contains("only S_INTERSECTS"));
        assert!(text("S_INTERSECTS(geometry, POLYGON((1 2, 3))").is_err());
        assert!(text("S_INTERSECTS(geometry, POLYGON((11 60, 11.1 60.8)))").unwrap_err().0.contains("not closed"));
        assert!(text("S_INTERSECTS(geometry, POLYGON((0 0, 1 0, 1 1, 0 1)))").unwrap_err().0.contains("not closed"));
        assert!(text("S_INTERSECTS(geometry, MULTIPOLYGON(((0 0, 1 0, 1 1, 0 0)), ((5 5, 6 5, 6 6))))").is_err());
        assert!(text("S_INTERSECTS(geometry, LINESTRING(1 2))").unwrap_err().0.contains("fewer than two"));
        assert!(text("S_INTERSECTS(geometry, POLYGON Z((11 60 1, 11.1 60 1, 11.1 60.1 1, 11 60 1)))").is_ok());
        let open_ring = r#"{"op":"s_intersects","args":[{"property":"geometry"},{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1]]]}]}"#;
        assert!(json(open_ring).unwrap_err().0.contains("not closed"));
        let j = json(r#"{"op":"s_intersects","args":[{"property":"geometry"},{"type":"Point","coordinates":[11.07,60.79]}]}"#).unwrap();
        assert!(j.contains("POINT("), "{j}");
        let b = json(r#"{"op":"s_intersects","args":[{"property":"geometry"},{"bbox":[11.0,60.7,11.2,60.85]}]}"#).unwrap();
        assert!(b.contains("POLYGON"), "{b}");
    }

    #[test]
    fn cql2_json_becomes_the_same_sql() {
        assert_eq!(json(r#"{"op":">","args":[{"property":"kapasitet"},50]}"#).unwrap(), text("kapasitet > 50").unwrap());
        assert_eq!(
            json(
                r#"{"op":"and","args":[{"op":"like","args":[{"property":"navn"},"A%"]},{"op":"in","args":[{"property":"b"},["x","y"]]}]}"#
            )
            .unwrap(),
            "((\"navn\" LIKE 'A%') AND (\"b\" IN ('x', 'y')))"
        );
        assert_eq!(json(r#"{"op":"isNull","args":[{"property":"a"}]}"#).unwrap(), "(\"a\" IS NULL)");
        assert_eq!(json(r#"{"op":"=","args":[{"property":"d"},{"date":"2020-01-02"}]}"#).unwrap(), "(\"d\" = DATE '2020-01-02')");
        assert!(json(r#"{"op":"=","args":[{"property":"a"}]}"#).unwrap_err().0.contains("takes 2"));
        assert!(json(r#"{"op":"drop","args":[]}"#).unwrap_err().0.contains("unknown operation"));
        assert!(json(r#"{"op":"=","args":[{"property":"a"},1],"x":1}"#).unwrap_err().0.contains("unknown member"));
        assert!(json("{\"op\":").unwrap_err().0.contains("line 1"));
    }
}
