//! The pages that show data: the catalogue, a dataset and the API document (the open page of
//! free kindergarten places is `kindergartens.rs`, a citizen's own page `me.rs`). Every read of table data goes through the
//! engine (`Engine::rows`, `Engine::sql`, `Engine::own_data`) as the visitor, with the purpose
//! they chose, on channel `web` — the same door and the same access log as the API.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use futures::StreamExt;
use tverr_access::{QueryError, Released, RowsQuery};
use tverr_core::{Classification, DatasetRef};
use tverr_policy::{Denial, Principal};

use super::{Chrome, Lang, Message, Visitor, format, query_value, svg};
use crate::{AppState, CatalogFilters, ListedDataset, Problem};
use tverr_access::Channel;
use tverr_access::ingest::ColumnType;

/// The channel page reads are logged under.
pub(super) const CHANNEL: Channel = Channel::Web;
/// How long a dataset page that is not found takes at least, whether the dataset exists or not.
const NOT_FOUND_TIME: std::time::Duration = std::time::Duration::from_millis(5);
/// Rows in a dataset page's preview.
pub(super) const PREVIEW_ROWS: usize = 20;
/// Geometries drawn on a dataset page's map at most.
pub(super) const MAP_SHAPES: usize = 5_000;

pub(super) fn not_found(v: &Visitor) -> Response {
    let page = v.chrome(v.lang.t("not_found"));
    let mut text = v.lang.t("not_found_text").to_string();
    if matches!(v.principal, Principal::Anonymous) {
        text = format!("{text} {}", v.lang.t("not_found_login"));
    }
    v.page(StatusCode::NOT_FOUND, &Message::new(page, v.lang.t("not_found"), text))
}

/// A problem from the layers below, as a page (a 404 as the not-found page).
pub(super) fn problem_page(v: &Visitor, p: Problem) -> Response {
    let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status == StatusCode::NOT_FOUND {
        return not_found(v);
    }
    let (title, text) = problem_words(v.lang, &p);
    let page = v.chrome(&title);
    let mut response = v.page(status, &Message::new(page, &title, text));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static(crate::problem::RETRY_AFTER_SECONDS));
    }
    response
}

/// A problem's title and text in `lang`: the kind's title in that language (the API's title
/// holds both, bokmål first), and what happened: the detail when it can be said in the language,
/// else what the kind means.
pub(super) fn problem_words(lang: Lang, p: &Problem) -> (String, String) {
    let slug = p.kind.rsplit('/').next().unwrap_or_default();
    let title = match (p.title.split_once(" / "), lang) {
        (Some((nb, _)), Lang::Nb) => nb.to_string(),
        (Some((_, en)), Lang::En) => en.to_string(),
        (None, _) => lang.t("error").to_string(),
    };
    let said = super::messages::translate(lang, &p.detail);
    let text = if said == lang.t("msg_unknown") { lang.label("problem", slug) } else { said };
    (title, text)
}

/// The visitor as a role the policy answered for, or the page that says this page is not theirs,
/// with the refusal's status (401 for the anonymous visitor, 403 for another role).
pub(super) fn role_or_page<R: TryFrom<crate::Caller, Error = Problem>>(
    v: &Visitor,
    title_key: &str,
    message_key: &str,
) -> Result<R, Response> {
    R::try_from(v.caller(None)).map_err(|p| {
        // Someone not logged in is asked to log in and comes back here.
        if matches!(v.principal, Principal::Anonymous) {
            let next: String = url::form_urlencoded::byte_serialize(v.path.as_bytes()).collect();
            return axum::response::IntoResponse::into_response(axum::response::Redirect::to(&format!("/logg-inn?next={next}")));
        }
        let page = v.chrome(v.lang.t(title_key));
        let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::FORBIDDEN);
        v.page(status, &Message::new(page, v.lang.t(title_key), v.lang.t(message_key).to_string()))
    })
}

pub(super) fn class_key(c: Classification) -> &'static str {
    match c {
        Classification::Open => "class_open",
        Classification::Internal => "class_internal",
        Classification::Confidential => "class_confidential",
        Classification::StrictlyConfidential => "class_strictly_confidential",
    }
}

pub(super) fn class_slug(c: Classification) -> &'static str {
    match c {
        Classification::Open => "open",
        Classification::Internal => "internal",
        Classification::Confidential => "confidential",
        Classification::StrictlyConfidential => "strictly-confidential",
    }
}

/// A dataset as a card in the catalogue.
pub(super) struct Card {
    href: String,
    title: String,
    reference: String,
    owner: String,
    description: String,
    class_key: &'static str,
    class_slug: &'static str,
    theme: String,
    access_key: &'static str,
}

/// One `<option>`.
pub(super) struct Choice {
    pub(super) value: String,
    pub(super) label: String,
    pub(super) selected: bool,
}

pub(super) fn choices(items: impl IntoIterator<Item = (String, String)>, selected: Option<&str>) -> Vec<Choice> {
    items.into_iter().map(|(value, label)| Choice { selected: selected == Some(value.as_str()), value, label }).collect()
}

#[derive(Template)]
#[template(path = "front.html")]
pub(super) struct Front {
    page: Chrome,
    q: String,
    orgs: Vec<Choice>,
    departments: Vec<Choice>,
    themes: Vec<Choice>,
    classes: Vec<Choice>,
    cards: Vec<Card>,
    error: Option<String>,
    /// The visitor's connectors whose last run failed (stewards).
    failing: Vec<super::connectors::ConnectorRow>,
}

/// `GET /`: the front page is the catalogue, searched and filtered.
pub async fn front(State(state): State<AppState>, v: Visitor) -> Response {
    let query = v.query.clone();
    let get = |k: &str| query_value(query.as_deref(), k).filter(|x| !x.trim().is_empty());
    let mut error = None;
    let classification = match get("classification").map(|c| c.parse::<Classification>()) {
        Some(Ok(c)) => Some(c),
        Some(Err(e)) => {
            error = Some(format!("{}: {e}", v.lang.t("classification")));
            None
        }
        None => None,
    };
    let filters = CatalogFilters { q: get("q"), theme: get("theme"), org: get("org"), department: get("department"), classification };
    let caller = v.caller(None);
    // Everything the visitor can find (for the theme filter's choices); the result itself is
    // that list again when nothing narrows it.
    let visible = match crate::find_datasets(&state, &caller, &CatalogFilters::default()).await {
        Ok(f) => f,
        Err(p) => return problem_page(&v, p),
    };
    let unfiltered = filters.q.is_none()
        && filters.theme.is_none()
        && filters.org.is_none()
        && filters.department.is_none()
        && filters.classification.is_none();
    let found = if unfiltered {
        None
    } else {
        match crate::find_datasets(&state, &caller, &filters).await {
            Ok(f) => Some(f),
            Err(p) => return problem_page(&v, p),
        }
    };
    let found = found.as_ref().unwrap_or(&visible);
    let catalog = &state.engine.catalog();
    let (orgs, departments) = match (catalog.orgs().await, catalog.departments(None).await) {
        (Ok(o), Ok(d)) => (o, d),
        (Err(e), _) | (_, Err(e)) => return problem_page(&v, Problem::from_store(e)),
    };
    let org_names: BTreeMap<String, String> = orgs.iter().map(|o| (o.slug.clone(), o.name.clone())).collect();
    let dept_names: BTreeMap<(String, String), String> =
        departments.iter().map(|d| ((d.org.clone(), d.slug.clone()), d.name.clone())).collect();
    let mut themes: Vec<String> = visible.iter().filter_map(|d| d.meta.theme.clone()).collect();
    themes.sort();
    themes.dedup();
    let cards = found.iter().map(|d: &ListedDataset| card(d, &org_names, &dept_names, v.lang)).collect();
    // A steward sees the connectors of their datasets whose last run failed.
    let failing = if tverr_policy::Policy::may(&v.principal, tverr_policy::Action::Upload).is_ok() {
        let all = state.engine.connectors(&v.principal).await.unwrap_or_default();
        all.iter().filter(|c| c.failures > 0).map(|c| super::connectors::ConnectorRow::of(c, v.lang)).collect()
    } else {
        Vec::new()
    };
    let page = Front {
        page: v.chrome(v.lang.t("catalogue_title")),
        q: filters.q.clone().unwrap_or_default(),
        orgs: choices(orgs.iter().map(|o| (o.slug.clone(), o.name.clone())), filters.org.as_deref()),
        departments: choices(
            departments.iter().map(|d| (d.slug.clone(), format!("{} ({})", d.name, org_names.get(&d.org).unwrap_or(&d.org)))),
            filters.department.as_deref(),
        ),
        themes: choices(themes.into_iter().map(|t| (t.clone(), v.lang.label("theme", &t))), filters.theme.as_deref()),
        classes: choices(
            [Classification::Open, Classification::Internal, Classification::Confidential, Classification::StrictlyConfidential]
                .into_iter()
                .map(|c| (class_slug(c).to_string(), v.lang.t(class_key(c)).to_string())),
            filters.classification.map(class_slug),
        ),
        cards,
        error,
        failing,
    };
    v.page(StatusCode::OK, &page)
}

pub(super) fn card(
    d: &ListedDataset,
    orgs: &BTreeMap<String, String>,
    depts: &BTreeMap<(String, String), String>,
    lang: super::Lang,
) -> Card {
    let m = &d.meta;
    Card {
        href: format!("/datasett/{}/{}", m.org, m.slug),
        title: m.title.clone(),
        reference: m.reference(),
        owner: format!(
            "{} – {}",
            orgs.get(&m.org).unwrap_or(&m.org),
            depts.get(&(m.org.clone(), m.department.clone())).unwrap_or(&m.department)
        ),
        description: m.description.clone(),
        class_key: class_key(m.classification),
        class_slug: class_slug(m.classification),
        theme: m.theme.as_deref().map(|t| lang.label("theme", t)).unwrap_or_default(),
        access_key: if d.access == "read" { "access_read" } else { "access_metadata" },
    }
}

/// A result drawn as a table of text.
#[derive(Default)]
pub(crate) struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// Reads a released result into a table (at most `max` rows) of the values as text (numbers
/// with a decimal point, ISO dates) and the geometries of its geometry columns; the rest of the
/// stream is dropped (its completion record says how many rows left).
pub(super) async fn collect(released: Released, max: usize) -> Result<(Table, Vec<geo::Geometry>), QueryError> {
    read_table(released, max, None).await
}

/// [`collect`], with the values as a reader of `lang` reads them ([`format::cell`]).
pub(super) async fn collect_shown(released: Released, max: usize, lang: Lang) -> Result<(Table, Vec<geo::Geometry>), QueryError> {
    read_table(released, max, Some(lang)).await
}

async fn read_table(released: Released, max: usize, lang: Option<Lang>) -> Result<(Table, Vec<geo::Geometry>), QueryError> {
    let mut stream = released.stream;
    let schema = stream.schema();
    let geometry: Vec<bool> = schema
        .fields()
        .iter()
        .map(|f| tverr_access::result_columns(&arrow::datatypes::Schema::new(vec![f.as_ref().clone()]))[0].column_type == "geometry")
        .collect();
    let mut table = Table { columns: schema.fields().iter().map(|f| f.name().clone()).collect(), rows: Vec::new() };
    let mut shapes = Vec::new();
    while table.rows.len() < max {
        let Some(batch) = stream.next().await.transpose()? else { break };
        let take = batch.num_rows().min(max - table.rows.len());
        let (rows, found) = batch_rows(&batch.slice(0, take), &geometry, lang);
        table.rows.extend(rows);
        shapes.extend(found);
    }
    Ok((table, shapes))
}

/// The rows of a batch as text, and the geometries of the columns marked in `geometry`.
fn batch_rows(batch: &arrow::record_batch::RecordBatch, geometry: &[bool], lang: Option<Lang>) -> (Vec<Vec<String>>, Vec<geo::Geometry>) {
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    let options = FormatOptions::default().with_null("");
    let schema = batch.schema();
    let formatters: Vec<Option<ArrayFormatter>> = batch
        .columns()
        .iter()
        .zip(geometry)
        .map(|(c, g)| if *g || lang.is_some() { None } else { ArrayFormatter::try_new(c.as_ref(), &options).ok() })
        .collect();
    let mut shapes = Vec::new();
    let rows = (0..batch.num_rows())
        .map(|row| {
            (0..batch.num_columns())
                .map(|i| {
                    let column = batch.column(i).as_ref();
                    if geometry[i] {
                        let shape = wkb_at(column, row);
                        let text = match (lang, &shape) {
                            (Some(lang), Some(g)) => format::shape(lang, g).to_string(),
                            _ => String::new(),
                        };
                        shapes.extend(shape);
                        return text;
                    }
                    match (lang, &formatters[i]) {
                        (Some(lang), _) => format::cell(lang, column, row, schema.field(i).name()).unwrap_or_default(),
                        (None, Some(f)) => f.value(row).to_string(),
                        (None, None) => String::new(),
                    }
                })
                .collect()
        })
        .collect();
    (rows, shapes)
}

/// A record batch as a table of text as a reader of `lang` reads it (the upload check's first
/// rows); a geometry shows as what it is, in words.
pub(crate) fn batch_table(batch: &arrow::record_batch::RecordBatch, lang: Lang) -> Table {
    let geometry: Vec<bool> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| matches!(f.data_type(), arrow::datatypes::DataType::Binary | arrow::datatypes::DataType::LargeBinary))
        .collect();
    let (rows, _) = batch_rows(batch, &geometry, Some(lang));
    Table { columns: batch.schema().fields().iter().map(|f| f.name().clone()).collect(), rows }
}

pub(super) fn wkb_at(array: &dyn arrow::array::Array, row: usize) -> Option<geo::Geometry> {
    use arrow::array::{Array, BinaryArray, BinaryViewArray, LargeBinaryArray};
    use geozero::ToGeo;
    let any = array.as_any();
    let bytes: &[u8] = if let Some(a) = any.downcast_ref::<BinaryArray>() {
        if a.is_null(row) {
            return None;
        }
        a.value(row)
    } else if let Some(a) = any.downcast_ref::<LargeBinaryArray>() {
        if a.is_null(row) {
            return None;
        }
        a.value(row)
    } else if let Some(a) = any.downcast_ref::<BinaryViewArray>() {
        if a.is_null(row) {
            return None;
        }
        a.value(row)
    } else {
        return None;
    };
    geozero::wkb::Wkb(bytes).to_geo().ok()
}

pub(super) struct ColumnRow {
    /// The catalogue's description, the title people read (empty when it has none).
    title: String,
    name: String,
    column_type: String,
    category: String,
    subject: String,
    mask: String,
}

pub(super) struct VersionRow {
    version: i64,
    when: String,
    actor: String,
    operation: String,
    /// `None` for a reader who is not shown row counts ([`crate::shows_row_counts`]).
    rows: Option<String>,
}

pub(super) struct Example {
    label: &'static str,
    code: String,
}

#[derive(Template)]
#[template(path = "dataset.html")]
pub(super) struct DatasetPage {
    page: Chrome,
    title: String,
    reference: String,
    description: String,
    owner: String,
    class_key: &'static str,
    class_slug: &'static str,
    theme: String,
    /// The licence's name and the address of its text.
    licence: Option<(String, String)>,
    frequency: String,
    keywords: String,
    columns: Vec<ColumnRow>,
    /// The preview's column headings: (title, technical name).
    headings: Vec<(String, String)>,
    /// The preview's cells: whether the value is text of the catalogue's language (names,
    /// addresses), and the value as shown.
    cells: Vec<Vec<(bool, String)>>,
    versions: Vec<VersionRow>,
    /// The purposes the visitor may choose from, when the data needs one.
    purposes: Vec<Choice>,
    purpose: String,
    needs_purpose: bool,
    needs_login: bool,
    denied: Option<String>,
    /// The agreement request for this dataset, prefilled, when access is denied.
    request_href: Option<String>,
    /// The preview's paging, sorting and filter.
    browse: Option<BrowseView>,
    preview: Option<Table>,
    map: Option<String>,
    map_alt: String,
    /// A link that draws the map, for data about people.
    map_on_request: bool,
    chart: Option<String>,
    chart_alt: String,
    /// (words, link, whether the link downloads at once: not for data about people, which is
    /// confirmed first).
    downloads: Vec<(String, String, bool)>,
    /// The dataset's connectors, for a visitor who may write it.
    connectors: Vec<super::connectors::ConnectorRow>,
    /// Whether the visitor may have notices of new versions (a signed-in reader).
    can_subscribe: bool,
    /// The visitor's subscriptions to this dataset.
    subscriptions: Vec<super::subscriptions::SubscriptionLine>,
    examples: Vec<Example>,
}

/// `GET /datasett/{org}/{dataset}?purpose=`.
pub async fn dataset(State(state): State<AppState>, v: Visitor, Path((org, dataset)): Path<(String, String)>) -> Response {
    let started = tokio::time::Instant::now();
    let Ok(r) = format!("{org}/{dataset}").parse::<DatasetRef>() else { return not_found(&v) };
    let purpose = query_value(v.query.as_deref(), "purpose").filter(|p| !p.is_empty());
    let caller = v.caller(purpose.clone());
    let policy = state.engine.policy();
    let decision = match policy.entitle(&caller.principal, purpose.as_deref(), &r).await {
        Ok(d) => d,
        Err(e) => return problem_page(&v, Problem::from_policy(e)),
    };
    let own_org = matches!(&v.principal, Principal::User(u) if u.org == r.org.as_str());
    // Invariant 3: a dataset the visitor may not know of looks like one that does not exist.
    let exists = state.engine.catalog().dataset_exists(&r).await.unwrap_or(false);
    let visible = exists && (!matches!(decision, Err(Denial::NotFound)) || own_org);
    if !visible {
        // The same page whether the dataset exists or not, and at the same time: a hidden
        // dataset's policy check took some 20 µs longer than a missing one's (attack 9, F5). A
        // visitor who is not logged in is told that logging in may show more.
        // Everything is done before the wait (the page made, what the check held dropped), so
        // nothing after it depends on the dataset.
        let page = not_found(&v);
        drop((decision, caller, purpose));
        tverr_access::pad_until(started + NOT_FOUND_TIME).await;
        return page;
    }
    let meta = match state.engine.catalog().dataset(&r).await {
        Ok(m) => m,
        Err(e) => return problem_page(&v, Problem::from_store(e)),
    };
    let catalog_columns = state.engine.catalog().columns(&r).await.unwrap_or_default();
    let versions = state.engine.catalog().versions(&r).await.unwrap_or_default();
    let orgs = state.engine.catalog().orgs().await.unwrap_or_default();
    let org_name = orgs.iter().find(|o| o.slug == r.org.as_str()).map_or(r.org.to_string(), |o| o.name.clone());
    let grant = decision.as_ref().ok();
    let counts = crate::shows_row_counts(grant, &catalog_columns);
    let columns = catalog_columns
        .iter()
        .filter(|c| grant.is_none_or(|g| g.columns().iter().any(|x| x.name == c.name)))
        .map(|c| ColumnRow {
            title: c.description.clone(),
            name: c.name.clone(),
            column_type: format::type_name(v.lang, c.column_type).to_string(),
            category: v.lang.label("cat", &c.category.to_string()),
            subject: c.subject_key.map(|k| v.lang.label("subj", &k.to_string())).unwrap_or_default(),
            mask: grant
                .and_then(|g| g.columns().iter().find(|x| x.name == c.name))
                .and_then(|x| x.mask)
                .map(|m| v.lang.mask(&m.to_string()))
                .unwrap_or_default(),
        })
        .collect();
    let purposes = match &v.principal {
        Principal::User(u) => super::own_purposes(&state, u).await.into_iter().map(|p| (p.slug.clone(), p.name.clone())).collect(),
        _ => Vec::new(),
    };
    let needs_purpose = matches!(decision, Err(Denial::PurposeRequired)) || (grant.is_none() && matches!(v.principal, Principal::User(_)));
    let denied = match (&decision, &v.principal) {
        (Err(Denial::PurposeNotAllowed), Principal::User(u)) | (Err(Denial::NotFound), Principal::User(u)) if purpose.is_some() => {
            Some(denial_reason(&state, u, &r, purpose.as_deref().unwrap_or_default(), v.lang).await)
        }
        _ => None,
    };
    // «Be om tilgang»: the agreement request, prefilled with this dataset and its columns.
    let request_href = denied.as_ref().map(|_| {
        let columns = catalog_columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(",");
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("datasett", &r.to_string()).append_pair("kolonner", &columns);
        if let Some(p) = &purpose {
            q.append_pair("formal", p);
        }
        format!("/avtaler?{}#be-om-tilgang", q.finish())
    });
    let mut page = DatasetPage {
        page: v.chrome(&meta.title),
        title: meta.title.clone(),
        reference: r.to_string(),
        description: meta.description.clone(),
        owner: format!(
            "{org_name} – {}",
            state
                .engine
                .catalog()
                .departments(Some(r.org.as_str()))
                .await
                .unwrap_or_default()
                .into_iter()
                .find(|d| d.slug == meta.department)
                .map_or(meta.department.clone(), |d| d.name)
        ),
        class_key: class_key(meta.classification),
        class_slug: class_slug(meta.classification),
        theme: meta.theme.as_deref().map(|t| v.lang.label("theme", t)).unwrap_or_default(),
        licence: meta.licence.as_deref().filter(|l| !l.trim().is_empty()).map(format::licence),
        frequency: meta.update_frequency.as_deref().map(|f| v.lang.label("freq", f)).unwrap_or_default(),
        keywords: meta.keywords.join(", "),
        columns,
        headings: Vec::new(),
        cells: Vec::new(),
        versions: versions
            .iter()
            .rev()
            .map(|x| VersionRow {
                version: x.version,
                when: format::moment(v.lang, x.committed_at.instant()),
                actor: x.actor.clone(),
                operation: v.lang.label("version", x.mode.as_str()),
                rows: counts.then(|| format::count(v.lang, x.rows_written)),
            })
            .collect(),
        purposes: choices(purposes, purpose.as_deref()),
        purpose: purpose.clone().unwrap_or_default(),
        needs_purpose,
        needs_login: false,
        denied,
        request_href,
        browse: None,
        preview: None,
        map: None,
        map_alt: String::new(),
        map_on_request: false,
        chart: None,
        chart_alt: String::new(),
        downloads: Vec::new(),
        connectors: if tverr_policy::Policy::may(
            &v.principal,
            tverr_policy::Action::Write { org: r.org.as_str(), department: &meta.department },
        )
        .is_ok()
        {
            let all = state.engine.dataset_connectors(&v.principal, &r).await.unwrap_or_default();
            all.iter().map(|c| super::connectors::ConnectorRow::of(c, v.lang)).collect()
        } else {
            Vec::new()
        },
        can_subscribe: matches!(v.principal, Principal::User(_)) && grant.is_some(),
        subscriptions: if matches!(v.principal, Principal::User(_)) {
            let mine = state.engine.subscriptions(&v.principal, Some(&r)).await.unwrap_or_default();
            mine.iter().map(|s| super::subscriptions::SubscriptionLine::of(s, v.lang)).collect()
        } else {
            Vec::new()
        },
        examples: examples(&r, purpose.as_deref(), meta.classification, v.lang),
    };
    // A statistics-only agreement releases counts of groups, never rows: the page says so and
    // offers no preview or download that would only be refused.
    if let Some(k) = grant.and_then(|g| g.min_group_size()) {
        page.denied = Some(v.lang.t("denied_statistics").replace("{k}", &k.to_string()));
        return v.page(StatusCode::OK, &page);
    }
    if let Some(grant) = grant {
        // The columns the grant lets through unmasked, with their catalogue types.
        let granted: Vec<&tverr_access::ColumnMeta> =
            catalog_columns.iter().filter(|c| grant.columns().iter().any(|g| g.name == c.name && g.mask.is_none())).collect();
        let browse = match Browse::read(&v, &granted) {
            Ok(b) => b,
            Err(p) => return problem_page(&v, p),
        };
        let q = RowsQuery {
            limit: Some(PREVIEW_ROWS),
            offset: (browse.page - 1) * PREVIEW_ROWS,
            order_by: browse.order.iter().cloned().collect(),
            filter: browse.filter.clone(),
            stable_order: true,
            ..RowsQuery::default()
        };
        match state.engine.rows(&caller.principal, purpose.as_deref(), &r, &q, CHANNEL).await {
            Ok(released) => match collect_shown(released, PREVIEW_ROWS, v.lang).await {
                Ok((table, _)) => {
                    // A full page may have a next one. Reading one row more to know would log a
                    // person whose row is not shown.
                    let more = table.rows.len() == PREVIEW_ROWS;
                    page.browse = Some(browse.view(&v, &granted, more, table.rows.len()));
                    page.headings = table
                        .columns
                        .iter()
                        .map(|n| {
                            let title = catalog_columns.iter().find(|c| &c.name == n).map(|c| c.description.clone()).unwrap_or_default();
                            (title, n.clone())
                        })
                        .collect();
                    let text: Vec<bool> = table
                        .columns
                        .iter()
                        .map(|n| catalog_columns.iter().any(|c| &c.name == n && c.column_type == ColumnType::Text))
                        .collect();
                    page.cells = table.rows.iter().map(|row| text.iter().copied().zip(row.iter().cloned()).collect()).collect();
                    page.preview = Some(table);
                }
                Err(e) => return problem_page(&v, Problem::from_query(e)),
            },
            Err(QueryError::NotAllowed(why)) => page.denied = Some(super::messages::translate(v.lang, &why)),
            Err(e) => return problem_page(&v, Problem::from_query(e)),
        }
        let geometry: Vec<String> = granted.iter().filter(|c| c.column_type == ColumnType::Geometry).map(|c| c.name.clone()).collect();
        // Minimisation: a map or chart of a dataset about people reads many people's rows, and
        // every one of them is logged as accessed; such a map is drawn only when asked for, and
        // such a chart not at all.
        let about_people = catalog_columns.iter().any(|c| c.subject_key == Some(tverr_core::SubjectKind::Person));
        let map_asked = query_value(v.query.as_deref(), "kart").is_some_and(|k| k == "1");
        page.map_on_request = about_people && !map_asked && !geometry.is_empty();
        if let Some(g) = geometry.first().filter(|_| !about_people || map_asked) {
            let q = RowsQuery { select: vec![g.clone()], limit: Some(MAP_SHAPES), ..RowsQuery::default() };
            if let Ok(released) = state.engine.rows(&caller.principal, purpose.as_deref(), &r, &q, CHANNEL).await
                && let Ok((_, shapes)) = collect(released, MAP_SHAPES).await
                && !shapes.is_empty()
            {
                // A map cut at MAP_SHAPES says so.
                let key = if shapes.len() >= MAP_SHAPES { "map_alt_cut" } else { "map_alt" };
                page.map_alt = v.lang.t(key).replace("{n}", &format::count(v.lang, shapes.len() as i64));
                let outline = if r.dataset.as_str() == OUTLINE { None } else { outline(&state, r.org.as_str()).await };
                page.map = Some(svg::map(&shapes, &[], &page.map_alt, outline.as_ref()));
            }
        }
        let chart = if about_people {
            None
        } else if meta.classification == Classification::Open {
            // Open data reads the same for everyone and is not logged: its charts are kept per
            // version and language.
            let key = (r.to_string(), versions.last().map_or(-1, |x| x.version), v.lang.code());
            match state.web_charts.get(&key) {
                Some(hit) => hit,
                None => {
                    let made = time_series(&state, &caller, &r, &granted, v.lang).await;
                    state.web_charts.put(key, made.clone());
                    made
                }
            }
        } else {
            time_series(&state, &caller, &r, &granted, v.lang).await
        };
        if let Some((chart, alt)) = chart {
            page.chart = Some(chart);
            page.chart_alt = alt;
        }
        let p = purpose.as_deref().map(|p| format!("&purpose={}", crate_encode(p))).unwrap_or_default();
        page.downloads = DOWNLOADS
            .iter()
            .filter(|(f, _)| *f != "geojson" || !geometry.is_empty())
            .map(|(f, key)| {
                (
                    v.lang.t(key).to_string(),
                    format!("/datasett/{}/{}/last-ned?format={f}{p}", r.org, r.dataset),
                    !holds_personal(&catalog_columns),
                )
            })
            .collect();
    } else if matches!(v.principal, Principal::Anonymous) {
        page.needs_login = true;
    }
    v.page(StatusCode::OK, &page)
}

/// Whether a dataset holds data about people: a person key, or any column of a personal
/// category (a property's owner is a person). Its downloads are confirmed first.
fn holds_personal(columns: &[tverr_access::ColumnMeta]) -> bool {
    columns.iter().any(|c| c.subject_key == Some(tverr_core::SubjectKind::Person) || c.category != tverr_core::ColumnCategory::None)
}

/// The preview's pages at most (a million rows in pages of 20: past that, the API).
const MAX_PREVIEW_PAGE: usize = 50_000;

/// How the visitor browses a preview: `side` (page, from 1), `sorter` and `retning` (a column
/// and `stigende`/`synkende`), `kolonne` and `verdi` (rows whose column has this value). Only
/// columns the grant releases unmasked may be sorted or filtered on (a masked column's order
/// would tell its values); the filter is built here, quoted, and checked by the engine like any
/// other. A time series is newest first unless another order is asked for.
struct Browse {
    page: usize,
    order: Option<(String, bool)>,
    column: String,
    value: String,
    filter: Option<String>,
}

/// What the preview's form and links show.
pub(super) struct BrowseView {
    /// (column, its title) of the columns that may be sorted and filtered on.
    columns: Vec<(String, String)>,
    sort: String,
    descending: bool,
    column: String,
    value: String,
    /// Rows shown: first and last, 1-based.
    from: usize,
    to: usize,
    previous: Option<String>,
    next: Option<String>,
}

impl Browse {
    fn read(v: &Visitor, granted: &[&tverr_access::ColumnMeta]) -> Result<Self, Problem> {
        let get = |k: &str| query_value(v.query.as_deref(), k).map(|x| x.trim().to_string()).filter(|x| !x.is_empty());
        let offered = |name: &str| granted.iter().find(|c| c.name == name && c.column_type != ColumnType::Geometry).copied();
        let page =
            match get("side") {
                None => 1,
                Some(p) => p.parse::<usize>().ok().filter(|p| (1..=MAX_PREVIEW_PAGE).contains(p)).ok_or_else(|| {
                    Problem::invalid_parameter(format!("side: expected a page from 1 to {MAX_PREVIEW_PAGE}, found {p:?}"))
                })?,
            };
        let descending = match get("retning").as_deref() {
            None | Some("stigende") => false,
            Some("synkende") => true,
            Some(other) => return Err(Problem::invalid_parameter(format!("retning: expected stigende or synkende, found {other:?}"))),
        };
        let order = match get("sorter") {
            Some(c) => match offered(&c) {
                Some(col) => Some((col.name.clone(), descending)),
                None => return Err(Problem::invalid_parameter(format!("sorter: {c:?} is not a column you may sort on"))),
            },
            // A time series reads newest first.
            None => {
                granted.iter().find(|c| matches!(c.column_type, ColumnType::Date | ColumnType::Timestamp)).map(|c| (c.name.clone(), true))
            }
        };
        let column = get("kolonne").unwrap_or_default();
        let value: String = get("verdi").unwrap_or_default().chars().take(200).collect();
        let filter = match (column.is_empty(), value.is_empty()) {
            (true, _) | (_, true) => None,
            (false, false) => {
                let col = offered(&column)
                    .ok_or_else(|| Problem::invalid_parameter(format!("kolonne: {column:?} is not a column you may filter on")))?;
                Some(condition(col, &value)?)
            }
        };
        Ok(Self { page, order, column, value, filter })
    }

    fn view(&self, v: &Visitor, granted: &[&tverr_access::ColumnMeta], more: bool, shown: usize) -> BrowseView {
        let link = |page: usize| {
            let mut pairs: Vec<(String, String)> = url::form_urlencoded::parse(v.query.as_deref().unwrap_or("").as_bytes())
                .filter(|(k, _)| k != "side" && k != "lang")
                .map(|(k, val)| (k.into_owned(), val.into_owned()))
                .collect();
            pairs.push(("side".into(), page.to_string()));
            format!("{}?{}#preview", v.path, url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish())
        };
        let from = (self.page - 1) * PREVIEW_ROWS + 1;
        BrowseView {
            columns: granted
                .iter()
                .filter(|c| c.column_type != ColumnType::Geometry)
                .map(|c| (c.name.clone(), if c.description.is_empty() { c.name.clone() } else { c.description.clone() }))
                .collect(),
            sort: self.order.as_ref().map(|o| o.0.clone()).unwrap_or_default(),
            descending: self.order.as_ref().is_some_and(|o| o.1),
            column: self.column.clone(),
            value: self.value.clone(),
            from: if shown == 0 { 0 } else { from },
            to: if shown == 0 { 0 } else { from + shown - 1 },
            previous: (self.page > 1).then(|| link(self.page - 1)),
            next: (more && self.page < MAX_PREVIEW_PAGE).then(|| link(self.page + 1)),
        }
    }
}

/// `column = value` as SQL, the value read as the column's type (a number, a date as
/// `dd.mm.åååå` or ISO, `ja`/`nei`) and quoted; text matches whole, ignoring case.
fn condition(col: &tverr_access::ColumnMeta, value: &str) -> Result<String, Problem> {
    let name = format!("\"{}\"", col.name.replace('"', "\"\""));
    let bad = |what: &str| Problem::invalid_parameter(format!("verdi: {value:?} is not {what}"));
    Ok(match col.column_type {
        ColumnType::Integer => {
            format!("{name} = {}", value.replace([' ', '\u{a0}', '\u{202f}'], "").parse::<i64>().map_err(|_| bad("a whole number"))?)
        }
        ColumnType::Float => {
            let x = value.replace([' ', '\u{a0}', '\u{202f}'], "").replace(',', ".").parse::<f64>().map_err(|_| bad("a number"))?;
            if !x.is_finite() {
                return Err(bad("a number"));
            }
            format!("{name} = {x:?}")
        }
        ColumnType::Boolean => match value.to_lowercase().as_str() {
            "ja" | "yes" | "true" => format!("{name} = true"),
            "nei" | "no" | "false" => format!("{name} = false"),
            _ => return Err(bad("ja or nei")),
        },
        ColumnType::Date | ColumnType::Timestamp => {
            let d = chrono::NaiveDate::parse_from_str(value, "%d.%m.%Y")
                .or_else(|_| chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d"))
                .map_err(|_| bad("a date"))?;
            format!("CAST({name} AS DATE) = DATE '{d}'")
        }
        ColumnType::Text => format!("lower({name}) = '{}'", value.to_lowercase().replace('\'', "''")),
        ColumnType::Geometry => return Err(bad("something a map column can be compared with")),
    })
}

/// Why `u` may not read `r` for `purpose`, from the agreements of their department: none covers
/// the dataset, one does but not for this purpose, one has expired, or a request is waiting.
async fn denial_reason(state: &AppState, u: &tverr_policy::User, r: &DatasetRef, purpose: &str, lang: Lang) -> String {
    use tverr_policy::AgreementState;
    let today = chrono::Utc::now().with_timezone(&chrono_tz::Europe::Oslo).date_naive();
    let all = state.engine.policy().agreements().await.unwrap_or_default();
    let ours: Vec<_> = all
        .iter()
        .filter(|a| crate::agreements::own_department(u, &a.consumer))
        .filter(|a| a.terms.datasets.iter().any(|d| d.dataset == r.to_string()))
        .collect();
    let purpose_name = state
        .engine
        .policy()
        .purposes(&u.org)
        .await
        .unwrap_or_default()
        .into_iter()
        .find(|p| p.slug == purpose)
        .map_or_else(|| purpose.to_string(), |p| p.name);
    let in_force = |a: &&&tverr_policy::Agreement| {
        a.state == AgreementState::Approved && a.terms.valid_from <= today && a.terms.valid_to.is_none_or(|t| t >= today)
    };
    let key_and_id = if let Some(a) = ours.iter().find(in_force) {
        if a.terms.purposes.iter().any(|p| p == purpose) { ("denied_columns", a.id) } else { ("denied_purpose", a.id) }
    } else if let Some(a) = ours.iter().find(|a| a.state == AgreementState::Requested) {
        ("denied_pending", a.id)
    } else if let Some(a) = ours
        .iter()
        .find(|a| a.state == AgreementState::Expired || a.state == AgreementState::Approved && a.terms.valid_to.is_some_and(|t| t < today))
    {
        let to = a.terms.valid_to.map(|t| format::long_day(lang, t)).unwrap_or_default();
        return lang.t("denied_expired").replace("{id}", &a.id.to_string()).replace("{date}", &to);
    } else {
        ("denied_no_agreement", 0)
    };
    lang.t(key_and_id.0).replace("{id}", &key_and_id.1.to_string()).replace("{purpose}", &purpose_name)
}

/// Charts of open datasets by (dataset, version, language): `None` for a dataset without one.
#[derive(Debug, Clone, Default)]
pub struct Charts(std::sync::Arc<std::sync::Mutex<ChartCache>>);

type ChartKey = (String, i64, &'static str);

/// A chart's SVG and its text alternative, or `None` for a dataset without one.
type ChartCache = std::collections::HashMap<ChartKey, Option<(String, String)>>;

/// Charts kept at most; past it, the cache starts again.
pub(super) const CHARTS_KEPT: usize = 256;

impl Charts {
    fn get(&self, key: &ChartKey) -> Option<Option<(String, String)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).get(key).cloned()
    }

    fn put(&self, key: ChartKey, chart: Option<(String, String)>) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= CHARTS_KEPT {
            map.clear();
        }
        map.insert(key, chart);
    }
}

/// The open dataset of an organisation whose geometry is its outline, drawn under its maps.
pub(super) const OUTLINE: &str = "kommunegrense";

/// The organisation's outline, when it publishes one as open data (`{org}/kommunegrense`).
pub(super) async fn outline(state: &AppState, org: &str) -> Option<geo::Geometry> {
    let r: DatasetRef = format!("{org}/{OUTLINE}").parse().ok()?;
    let q = RowsQuery { limit: Some(10), ..RowsQuery::default() };
    let released = state.engine.rows(&Principal::Anonymous, None, &r, &q, CHANNEL).await.ok()?;
    let (_, shapes) = collect(released, 10).await.ok()?;
    shapes.into_iter().next()
}

pub(super) fn crate_encode(v: &str) -> String {
    url::form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

pub(super) fn examples(r: &DatasetRef, purpose: Option<&str>, class: Classification, lang: Lang) -> Vec<Example> {
    let open = class == Classification::Open;
    let placeholder = match lang {
        Lang::Nb => "<formål>",
        Lang::En => "<purpose>",
    };
    let auth = if open { String::new() } else { " \\\n  -H \"Authorization: Bearer $TVERR_TOKEN\"".to_string() };
    let purpose_h = match (open, purpose) {
        (false, Some(p)) => format!(" \\\n  -H \"Tverr-Purpose: {p}\""),
        (false, None) => format!(" \\\n  -H \"Tverr-Purpose: {placeholder}\""),
        _ => String::new(),
    };
    let py_headers = if open {
        String::new()
    } else {
        format!(",\n    headers={{\"Authorization\": f\"Bearer {{token}}\", \"Tverr-Purpose\": \"{}\"}}", purpose.unwrap_or(placeholder))
    };
    vec![
        Example {
            label: "curl",
            code: format!("curl \"$TVERR_URL/api/v1/datasets/{}/{}/rows?limit=10\"{auth}{purpose_h}", r.org, r.dataset),
        },
        Example {
            label: "Python",
            code: format!(
                "import requests\nrows = requests.get(\n    f\"{{url}}/api/v1/datasets/{}/{}/rows\",\n    params={{\"limit\": 10}}{py_headers},\n).json()[\"rows\"]",
                r.org, r.dataset
            ),
        },
        Example {
            label: "SQL",
            code: format!(
                "curl \"$TVERR_URL/api/v1/sql\"{auth}{purpose_h} \\\n  --json '{{\"sql\": \"SELECT * FROM {} LIMIT 10\"}}'",
                tverr_access::sql_name(r).replace('"', "\\\"")
            ),
        },
    ]
}

/// A chart for a dataset with a date or time column and a number column: the monthly average,
/// one line per value of the text column that best separates the numbers (pH from °C, say),
/// through `Engine::sql` like any other read.
pub(super) async fn time_series(
    state: &AppState,
    caller: &crate::Caller,
    r: &DatasetRef,
    columns: &[&tverr_access::ColumnMeta],
    lang: super::Lang,
) -> Option<(String, String)> {
    let time = columns.iter().find(|c| matches!(c.column_type, ColumnType::Date | ColumnType::Timestamp))?;
    let value = columns.iter().find(|c| c.subject_key.is_none() && matches!(c.column_type, ColumnType::Float | ColumnType::Integer))?;
    let table = format!("\"{}\".\"{}\"", r.org, r.dataset);
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let (t, val) = (quote(&time.name), quote(&value.name));
    let purpose = caller.purpose.as_deref();
    let run = |sql: String| async move {
        let released = state.engine.sql(&caller.principal, purpose, &sql, CHANNEL).await.ok()?;
        collect(released, 100_000).await.ok().map(|(t, _)| t)
    };
    // The text column whose groups differ most in their average, if it splits them clearly.
    let mut split: Option<(f64, String)> = None;
    for c in columns.iter().filter(|c| c.column_type == ColumnType::Text && c.subject_key.is_none()) {
        let groups = run(format!("SELECT {q}, avg({val}) FROM {table} GROUP BY {q} LIMIT 9", q = quote(&c.name))).await?;
        if !(2..=8).contains(&groups.rows.len()) {
            continue;
        }
        let means: Vec<f64> = groups.rows.iter().filter_map(|row| row[1].parse().ok()).collect();
        let mean = means.iter().sum::<f64>() / means.len() as f64;
        let spread = (means.iter().map(|m| (m - mean).powi(2)).sum::<f64>() / means.len() as f64).sqrt() / mean.abs().max(1e-9);
        if spread > 0.2 && split.as_ref().is_none_or(|(s, _)| spread > *s) {
            split = Some((spread, c.name.clone()));
        }
    }
    let (series_sql, group) = match &split {
        Some((_, s)) => (format!("CAST({} AS VARCHAR)", quote(s)), format!(", {}", quote(s))),
        None => (format!("'{}'", value.name.replace('\'', "''")), String::new()),
    };
    let sql = format!(
        "SELECT {series_sql} AS series, CAST(date_trunc('month', {t}) AS DATE) AS month, avg({val}) AS value \
         FROM {table} GROUP BY date_trunc('month', {t}){group} ORDER BY 1, 2 LIMIT 2000"
    );
    let rows = run(sql).await?;
    let mut series: BTreeMap<String, Vec<(chrono::NaiveDate, f64)>> = BTreeMap::new();
    for row in &rows.rows {
        let (Ok(d), Ok(y)) = (chrono::NaiveDate::parse_from_str(&row[1], "%Y-%m-%d"), row[2].parse::<f64>()) else { continue };
        series.entry(row[0].clone()).or_default().push((d, y));
    }
    if series.values().all(|s| s.len() < 2) {
        return None;
    }
    // The value's title is the catalogue's description of its column, when it has one.
    let title = if value.description.is_empty() { value.name.clone() } else { value.description.clone() };
    let mut alt = Vec::new();
    for (name, points) in &series {
        let (min, max) = points.iter().fold((f64::MAX, f64::MIN), |(a, b), (_, y)| (a.min(*y), b.max(*y)));
        alt.push(
            lang.t("chart_alt")
                .replace("{v}", &format!("<span lang=\"nb\">{}</span>", svg::escape(&title)))
                .replace("{s}", &svg::escape(name))
                .replace("{from}", &format::month(lang, points[0].0))
                .replace("{to}", &format::month(lang, points[points.len() - 1].0))
                .replace("{min}", &format::number(lang, min, 2))
                .replace("{max}", &format::number(lang, max, 2)),
        );
    }
    Some((svg::charts(&series, &title, lang), alt.join(" ")))
}

/// The downloads a dataset page offers: (the `format` of the link, its words). «Excel (norsk)» is
/// CSV as Excel opens it in Norway (semicolons, decimal comma, a byte order mark); GeoJSON is in
/// WGS 84 (EPSG:4326), as web maps read it.
const DOWNLOADS: &[(&str, &str)] = &[
    ("excel", "download_excel"),
    ("csv", "download_csv"),
    ("xlsx", "download_xlsx"),
    ("json", "download_json"),
    ("ndjson", "download_ndjson"),
    ("parquet", "download_parquet"),
    ("geojson", "download_geojson"),
];

#[derive(Template)]
#[template(path = "download_confirm.html")]
struct ConfirmPage {
    page: Chrome,
    title: String,
    reference: String,
    href: String,
    back: String,
}

/// `GET /datasett/{org}/{dataset}/last-ned?format=&purpose=`: the whole dataset as a file, by
/// the REST route's own code with the session's principal. A file about people is sent only
/// after the visitor has confirmed it (`bekreftet=1`), told that every person in it is logged
/// as read by them.
pub async fn download(State(state): State<AppState>, v: Visitor, path: Path<(String, String)>, headers: HeaderMap) -> Response {
    let purpose = query_value(v.query.as_deref(), "purpose");
    let format = query_value(v.query.as_deref(), "format").unwrap_or_else(|| "csv".into());
    if !DOWNLOADS.iter().any(|(f, _)| *f == format) {
        return problem_page(&v, Problem::invalid_parameter(format!("format: {format:?}")));
    }
    let Ok(r) = format!("{}/{}", path.0.0, path.0.1).parse::<DatasetRef>() else { return not_found(&v) };
    let about_people = holds_personal(&state.engine.catalog().columns(&r).await.unwrap_or_default());
    if about_people && query_value(v.query.as_deref(), "bekreftet").as_deref() != Some("1") {
        // Only data the visitor may read, for the purpose given, gets a confirmation page; any
        // other is refused below exactly as without one.
        if matches!(state.engine.policy().entitle(&v.principal, purpose.as_deref(), &r).await, Ok(Ok(_))) {
            let title = state.engine.catalog().dataset(&r).await.map(|m| m.title).unwrap_or_else(|_| r.to_string());
            let here = format!("{}?{}", v.path, v.query.as_deref().unwrap_or_default());
            let back = match &purpose {
                Some(p) => format!("/datasett/{r}?purpose={}", crate_encode(p)),
                None => format!("/datasett/{r}"),
            };
            let page = ConfirmPage {
                page: v.chrome(v.lang.t("download_confirm_title")),
                title,
                reference: r.to_string(),
                href: format!("{here}&bekreftet=1"),
                back,
            };
            return v.page(StatusCode::OK, &page);
        }
    }
    let query = {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        match format.as_str() {
            "excel" => {
                q.append_pair("format", "csv").append_pair("delimiter", ";").append_pair("decimal", ",").append_pair("bom", "true");
            }
            "geojson" => {
                q.append_pair("format", "geojson").append_pair("crs", "EPSG:4326");
            }
            other => {
                q.append_pair("format", other);
            }
        }
        if let Some(p) = &purpose {
            q.append_pair("purpose", p);
        }
        q.finish()
    };
    let caller = v.caller(purpose);
    match crate::rows::rows_on(State(state), caller, path, axum::extract::RawQuery(Some(query)), headers, CHANNEL).await {
        Ok(mut r) => {
            let name = r.headers().get(axum::http::header::CONTENT_DISPOSITION).is_some();
            if !name {
                r.headers_mut().insert(axum::http::header::CONTENT_DISPOSITION, axum::http::HeaderValue::from_static("attachment"));
            }
            r
        }
        Err(p) => problem_page(&v, p),
    }
}

pub(super) struct Operation {
    method: String,
    path: String,
    summary: Vec<Span>,
    anchor: String,
    parameters: Vec<(String, String, bool, Vec<Span>)>,
    responses: Vec<(String, Vec<Span>)>,
}

/// A piece of a text from the API document: words, or code (between backticks there).
pub(super) struct Span {
    code: bool,
    text: String,
}

/// A text of the API document in the page's language ([`super::api_nb::API_NB`] for bokmål), cut
/// into words and code.
fn api_text(lang: Lang, english: &str) -> Vec<Span> {
    let text = match lang {
        Lang::En => english,
        Lang::Nb => super::api_nb::API_NB.iter().find(|(en, _)| *en == english).map_or(english, |(_, nb)| nb),
    };
    text.split('`').enumerate().filter(|(_, t)| !t.is_empty()).map(|(i, t)| Span { code: i % 2 == 1, text: t.replace('\n', " ") }).collect()
}

#[derive(Template)]
#[template(path = "api.html")]
pub(super) struct ApiPage {
    page: Chrome,
    /// (anchor, heading, operations).
    tags: Vec<(String, String, Vec<Operation>)>,
}

/// The texts of the API document a page shows: summaries, parameter descriptions, the first
/// line of each response's description, and `TAG:` names.
#[cfg(test)]
pub(super) fn api_texts(doc: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    for item in doc["paths"].as_object().into_iter().flat_map(|p| p.values()) {
        for op in item.as_object().into_iter().flat_map(|o| o.values()) {
            out.extend(op["tags"][0].as_str().map(|t| format!("TAG:{t}")));
            out.extend(op["summary"].as_str().or(op["description"].as_str()).map(str::to_string));
            for p in op["parameters"].as_array().into_iter().flatten() {
                out.extend(p["description"].as_str().map(str::to_string));
            }
            for r in op["responses"].as_object().into_iter().flat_map(|r| r.values()) {
                out.extend(r["description"].as_str().and_then(|d| d.lines().next()).map(str::to_string));
            }
        }
    }
    out.retain(|t| !t.is_empty());
    out
}

/// `GET /api`: the OpenAPI document, readable, in the page's language.
pub async fn api(v: Visitor) -> Response {
    let doc = serde_json::to_value(crate::openapi()).unwrap_or_default();
    let mut tags: BTreeMap<String, Vec<Operation>> = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for (method, op) in item.as_object().into_iter().flatten() {
            let tag = op["tags"][0].as_str().unwrap_or("other").to_string();
            let summary = api_text(v.lang, op["summary"].as_str().or(op["description"].as_str()).unwrap_or_default());
            let parameters = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    (
                        p["name"].as_str().unwrap_or_default().to_string(),
                        v.lang.label("api_in", p["in"].as_str().unwrap_or_default()),
                        p["required"].as_bool().unwrap_or(false),
                        api_text(v.lang, p["description"].as_str().unwrap_or_default()),
                    )
                })
                .collect();
            let responses = op["responses"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(code, r)| {
                    (code.clone(), api_text(v.lang, r["description"].as_str().unwrap_or_default().lines().next().unwrap_or_default()))
                })
                .collect();
            let anchor: String = format!("{method}-{path}").chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
            tags.entry(tag).or_default().push(Operation {
                method: method.to_uppercase(),
                path: path.clone(),
                summary,
                anchor,
                parameters,
                responses,
            });
        }
    }
    let tags = tags
        .into_iter()
        .map(|(tag, ops)| {
            let heading = api_text(v.lang, &format!("TAG:{tag}")).into_iter().map(|s| s.text).collect::<String>();
            let heading = heading.strip_prefix("TAG:").map_or(heading.clone(), str::to_string);
            (tag, heading, ops)
        })
        .collect();
    v.page(StatusCode::OK, &ApiPage { page: v.chrome(v.lang.t("api_title")), tags })
}
