//! The HTML views of OGC API – Features (`/ogc…?f=html`), in the web pages' frame and style.
//! They show what the request's credential may read; a browser sends none, so a person sees
//! the open collections, and the data comes from the same reads as the JSON.

use arrow::array::AsArray;
use arrow::record_batch::RecordBatch;
use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use geozero::ToGeo;
use tverr_access::{FEATURE_ID_COLUMN, GeometryColumn};

use super::{Chrome, Lang, format};

#[derive(Template)]
#[template(path = "ogc.html")]
struct OgcPage {
    page: Chrome,
    heading: String,
    nb_heading: bool,
    intro: Option<String>,
    nb_intro: bool,
    /// Target, words, whether the words are catalogue text (bokmål), a description under it.
    links: Vec<(String, String, bool, String)>,
    count: Option<String>,
    headings: Vec<String>,
    /// Cells: whether the text is the catalogue's bokmål, and the text.
    rows: Vec<Vec<(bool, String)>>,
    /// Target, words, rel.
    ways: Vec<(String, String, String)>,
}

impl OgcPage {
    fn new(lang: Lang, path: &str, heading: String, nb_heading: bool) -> Self {
        let switch_href = format!("{path}{}lang={}", if path.contains('?') { '&' } else { '?' }, lang.other().code());
        let page = Chrome {
            lang,
            title: heading.clone(),
            who: None,
            citizen: false,
            employee: false,
            auditor: false,
            steward: false,
            csrf: String::new(),
            switch_href,
            path: path.to_string(),
        };
        Self {
            page,
            heading,
            nb_heading,
            intro: None,
            nb_intro: false,
            links: Vec::new(),
            count: None,
            headings: Vec::new(),
            rows: Vec::new(),
            ways: Vec::new(),
        }
    }

    fn json_way(mut self, href: String) -> Self {
        let words = self.page.t("ogc_as_json").to_string();
        self.ways.push((href, words, "alternate".into()));
        self
    }

    fn respond(self) -> Response {
        let body = match self.render() {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "a template failed to render");
                return (StatusCode::INTERNAL_SERVER_ERROR, Html("<!doctype html><title>Feil</title><p>Feil / Error</p>".to_string()))
                    .into_response();
            }
        };
        let mut response = Html(body).into_response();
        super::page_headers(response.headers_mut());
        response
    }
}

fn with_lang(href: &str, lang: Lang) -> String {
    format!("{href}{}lang={}", if href.contains('?') { '&' } else { '?' }, lang.code())
}

/// The landing page.
pub(crate) fn landing(lang: Lang) -> Response {
    let mut p = OgcPage::new(lang, "/ogc?f=html", lang.t("ogc_title").into(), false);
    p.intro = Some(lang.t("ogc_intro").into());
    p.links = vec![
        (with_lang("/ogc/collections?f=html", lang), lang.t("ogc_collections").into(), false, String::new()),
        (with_lang("/ogc/conformance?f=html", lang), lang.t("ogc_conformance").into(), false, String::new()),
        (with_lang("/ogc/api?f=html", lang), lang.t("ogc_api").into(), false, String::new()),
    ];
    p.json_way("/ogc?f=json".into()).respond()
}

/// The conformance classes.
pub(crate) fn conformance(lang: Lang, classes: &[&str]) -> Response {
    let mut p = OgcPage::new(lang, "/ogc/conformance?f=html", lang.t("ogc_conformance").into(), false);
    p.links = classes.iter().map(|c| (c.to_string(), c.to_string(), false, String::new())).collect();
    p.json_way("/ogc/conformance?f=json".into()).respond()
}

/// The API definition's page.
pub(crate) fn api(lang: Lang) -> Response {
    let mut p = OgcPage::new(lang, "/ogc/api?f=html", lang.t("ogc_api").into(), false);
    p.intro = Some(lang.t("ogc_api_text").into());
    p.json_way("/ogc/api?f=json".into()).respond()
}

/// The collections: id, title, description.
pub(crate) fn collections(lang: Lang, list: &[(String, String, String)]) -> Response {
    let mut p = OgcPage::new(lang, "/ogc/collections?f=html", lang.t("ogc_collections").into(), false);
    p.links = list
        .iter()
        .map(|(id, title, description)| {
            (with_lang(&format!("/ogc/collections/{id}?f=html"), lang), title.clone(), true, description.clone())
        })
        .collect();
    p.json_way("/ogc/collections?f=json".into()).respond()
}

/// One collection.
pub(crate) fn collection(lang: Lang, id: &str, title: &str, description: &str, stored: &str) -> Response {
    let mut p = OgcPage::new(lang, &format!("/ogc/collections/{id}?f=html"), title.into(), true);
    p.intro = Some(description.into());
    p.nb_intro = true;
    p.count = Some(lang.t("ogc_stored").replace("{crs}", stored));
    let (org, dataset) = id.split_once('.').unwrap_or((id, ""));
    p.links = vec![
        (with_lang(&format!("/ogc/collections/{id}/items?f=html"), lang), lang.t("ogc_items").into(), false, String::new()),
        (with_lang(&format!("/ogc/collections/{id}/queryables?f=html"), lang), lang.t("ogc_queryables").into(), false, String::new()),
        (with_lang(&format!("/datasett/{org}/{dataset}"), lang), lang.t("ogc_dataset_page").into(), false, String::new()),
    ];
    p.json_way(format!("/ogc/collections/{id}?f=json")).respond()
}

/// A collection's queryables: name and title.
pub(crate) fn queryables(lang: Lang, id: &str, title: &str, list: &[(String, String)]) -> Response {
    let mut p = OgcPage::new(lang, &format!("/ogc/collections/{id}/queryables?f=html"), lang.t("ogc_queryables").into(), false);
    p.intro = Some(title.into());
    p.nb_intro = true;
    p.headings = vec![lang.t("ogc_property").into(), lang.t("ogc_description").into()];
    p.rows = list.iter().map(|(n, d)| vec![(true, n.clone()), (true, d.clone())]).collect();
    p.json_way(format!("/ogc/collections/{id}/queryables?f=json")).respond()
}

/// Links of an items page: next, previous and the same page as JSON.
pub(crate) struct Paging {
    pub next: Option<String>,
    pub prev: Option<String>,
    pub json: String,
}

/// A table of features: the id, each property as the page's language writes it, and the
/// geometry's shape in words.
fn table(lang: Lang, batches: &[RecordBatch], geometry: &[GeometryColumn]) -> (Vec<String>, Vec<Vec<(bool, String)>>) {
    let Some(first) = batches.first() else { return (Vec::new(), Vec::new()) };
    let schema = first.schema();
    let mut headings = vec![lang.t("ogc_id").to_string()];
    let columns: Vec<usize> = (0..schema.fields().len()).filter(|i| schema.field(*i).name() != FEATURE_ID_COLUMN).collect();
    headings.extend(columns.iter().map(|i| schema.field(*i).name().clone()));
    let mut rows = Vec::new();
    for batch in batches {
        let ids = batch.column_by_name(FEATURE_ID_COLUMN).and_then(|a| a.as_string_opt::<i32>().cloned());
        for row in 0..batch.num_rows() {
            let mut cells = vec![(false, ids.as_ref().map(|a| a.value(row).to_string()).unwrap_or_default())];
            for i in &columns {
                let name = schema.field(*i).name();
                let array = batch.column(*i);
                let cell = match format::cell(lang, array.as_ref(), row, name) {
                    Some(c) => c,
                    None if geometry.iter().any(|g| &g.name == name) => arrow::compute::cast(array, &arrow::datatypes::DataType::Binary)
                        .ok()
                        .and_then(|b| b.as_binary_opt::<i32>().and_then(|b| geozero::wkb::Wkb(b.value(row)).to_geo().ok()))
                        .map(|g| format::shape(lang, &g).to_string())
                        .unwrap_or_default(),
                    None => String::new(),
                };
                let text = matches!(
                    array.data_type(),
                    arrow::datatypes::DataType::Utf8 | arrow::datatypes::DataType::LargeUtf8 | arrow::datatypes::DataType::Utf8View
                );
                cells.push((text, cell));
            }
            rows.push(cells);
        }
    }
    (headings, rows)
}

/// A page of features.
#[allow(clippy::too_many_arguments)]
pub(crate) fn items(
    lang: Lang,
    id: &str,
    title: &str,
    batches: &[RecordBatch],
    geometry: &[GeometryColumn],
    matched: u64,
    offset: usize,
    paging: &Paging,
) -> Response {
    let mut p = OgcPage::new(lang, &format!("/ogc/collections/{id}/items?f=html"), title.into(), true);
    let shown: usize = batches.iter().map(RecordBatch::num_rows).sum();
    p.count = Some(if shown == 0 {
        lang.t("ogc_none").to_string()
    } else {
        lang.t("ogc_range")
            .replace("{matched}", &format::count(lang, matched as i64))
            .replace("{from}", &format::count(lang, offset as i64 + 1))
            .replace("{to}", &format::count(lang, (offset + shown) as i64))
    });
    (p.headings, p.rows) = table(lang, batches, geometry);
    if let Some(h) = &paging.prev {
        p.ways.push((with_lang(h, lang), lang.t("page_previous").into(), "prev".into()));
    }
    if let Some(h) = &paging.next {
        p.ways.push((with_lang(h, lang), lang.t("page_next").into(), "next".into()));
    }
    p.json_way(paging.json.clone()).respond()
}

/// One feature.
pub(crate) fn feature(lang: Lang, id: &str, title: &str, batch: &RecordBatch, geometry: &[GeometryColumn]) -> Response {
    let mut p = OgcPage::new(lang, &format!("/ogc/collections/{id}/items?f=html"), title.into(), true);
    (p.headings, p.rows) = table(lang, std::slice::from_ref(batch), geometry);
    p.ways.push((with_lang(&format!("/ogc/collections/{id}/items?f=html"), lang), lang.t("ogc_items").into(), "collection".into()));
    p.respond()
}
