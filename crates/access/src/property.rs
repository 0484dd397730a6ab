//! The property service («byggesak»): everything about one matrikkel unit its reader may see —
//! the rows of every dataset keyed by it (the property register, building cases, water meters),
//! its parcel, the zoning plans whose plan area meets the parcel (a spatial join, with the share
//! of the parcel each covers) — and the neighbours to notify of a building application
//! (plan- og bygningsloven § 21-3).
//!
//! Nothing here reads around the door: the property's rows come from a look-up without hops
//! (the subject index and each dataset's secure scan under the caller's grant; a citizen's own
//! rows under their own right), the plans and the neighbours from ordinary audited reads with a
//! spatial filter. Every read is in the access log with the caller's purpose.
//!
//! A neighbour whose owner has a protected address is not in the list, and nothing in the
//! answer says whether one is missing: the register withholds such a parcel's place from the
//! reader, so it is never found by distance, and the notice every answer carries (send the
//! notice through the Folkeregister as well) is the same whatever the neighbourhood holds.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::DataType;
use futures::StreamExt;
use geozero::ToGeo;
use serde::Serialize;
use tverr_core::{DatasetRef, SubjectKind};
use tverr_policy::Principal;

use crate::geo::Crs;
use crate::{Channel, Engine, LookupOrg, QueryError, Released, RowsQuery};

/// The farthest a neighbour may be looked for, in metres.
pub const MAX_NEIGHBOUR_DISTANCE: f64 = 500.0;

/// The most neighbours one answer lists.
pub const MAX_NEIGHBOURS: usize = 500;

/// The most properties an address search returns.
pub const MAX_ADDRESS_MATCHES: usize = 50;

/// What every neighbour list says of owners with protected addresses, whatever it holds.
pub const PROTECTED_NOTICE: &str = "Owners with a protected address (fortrolig or strengt fortrolig) are never listed, and the \
     list does not say whether any are missing. Send the neighbour notice to the Folkeregister (Skatteetaten) as well, which \
     forwards it to protected owners within the same distance.";

/// Which datasets the property service reads.
#[derive(Debug, Clone)]
pub struct PropertySources {
    /// The property register: one row per matrikkel unit, with its parcel (e.g. `hamar/eiendommer`).
    pub register: DatasetRef,
    /// The zoning plans, with their plan areas (e.g. `hamar/reguleringsplaner`).
    pub plans: DatasetRef,
    /// The register's address column, for the address search.
    pub address: String,
    /// The register's columns that name the owners (the neighbour list shows these, the
    /// matrikkel unit and the address, and nothing else).
    pub owners: Vec<String>,
}

/// A matrikkel unit's parcel.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Parcel {
    /// The dataset it was read from.
    pub dataset: String,
    /// The parcel as WKT.
    pub wkt: String,
    /// Its CRS (`EPSG:25833`).
    pub crs: String,
    /// Its area in square metres (in its CRS's plane).
    pub area_m2: f64,
    /// The parcel, for maps.
    #[serde(skip)]
    pub shape: geo::Geometry,
}

/// A zoning plan whose plan area meets the parcel.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ZoningPlan {
    /// The plan's row, without its geometry.
    #[schema(value_type = Object)]
    pub plan: serde_json::Map<String, serde_json::Value>,
    /// The area of the parcel the plan covers, in square metres.
    pub covered_m2: f64,
    /// The share of the parcel the plan covers, from 0 to 1.
    pub share: f64,
    /// The plan area, for maps.
    #[serde(skip)]
    pub shape: Option<geo::Geometry>,
}

/// Everything about one property its reader may see.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PropertyView {
    /// The canonical matrikkel unit.
    pub id: String,
    /// The declared purpose (none for a citizen reading their own property).
    pub purpose: Option<String>,
    /// The rows about the property, by organisation, department and dataset (as a look-up).
    pub organizations: Vec<LookupOrg>,
    /// The parcel, when a dataset the reader sees holds it.
    pub parcel: Option<Parcel>,
    /// The zoning plans that apply: those whose plan area meets the parcel, largest share first.
    pub zoning: Vec<ZoningPlan>,
}

/// The neighbours to notify of a building application on a property.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Neighbours {
    /// The property applied for.
    pub id: String,
    /// The distance searched, in metres (0: parcels that share a border or overlap).
    pub within_m: f64,
    /// The register read.
    pub dataset: String,
    /// The neighbouring parcels' rows as the reader may see them, without geometry, by matrikkel.
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<serde_json::Map<String, serde_json::Value>>,
    /// How many parcels lie within the distance, as the reader may see them.
    pub found: usize,
    /// Whether `rows` holds only the first [`MAX_NEIGHBOURS`] of them by matrikkel (then a notice
    /// needs a shorter distance, or the list from the land register).
    pub truncated: bool,
    /// What the list says of protected owners (always the same).
    pub protected_addresses: &'static str,
    /// The parcels, for maps (in `rows`' order).
    #[serde(skip)]
    pub shapes: Vec<Option<geo::Geometry>>,
    /// The rows as CSV (header first, formulas neutralised).
    #[serde(skip)]
    pub csv: Vec<u8>,
}

/// Rows read through the door: JSON objects without geometry, the geometries, and the batches.
struct Collected {
    rows: Vec<serde_json::Map<String, serde_json::Value>>,
    shapes: Vec<Option<geo::Geometry>>,
    batches: Vec<RecordBatch>,
}

/// Reads a released stream whole (at most `max` rows), splitting off its geometry columns.
async fn collect(released: Released, max: usize) -> Result<Collected, QueryError> {
    let mut stream = released.stream;
    let mut out = Collected { rows: Vec::new(), shapes: Vec::new(), batches: Vec::new() };
    while let Some(batch) = stream.next().await.transpose()? {
        let got = batch_rows(&batch, max - out.rows.len())?;
        out.rows.extend(got.rows);
        out.shapes.extend(got.shapes);
        out.batches.extend(got.batches);
        if out.rows.len() >= max {
            break;
        }
    }
    Ok(out)
}

/// One batch's rows (at most `max`), its geometry split off.
fn batch_rows(batch: &RecordBatch, max: usize) -> Result<Collected, QueryError> {
    let mut out = Collected { rows: Vec::new(), shapes: Vec::new(), batches: Vec::new() };
    {
        let geometry: Vec<usize> = batch
            .schema()
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| crate::geo::field_crs(f).is_some() || f.data_type() == &DataType::Binary)
            .map(|(i, _)| i)
            .collect();
        let plain: Vec<usize> = (0..batch.num_columns()).filter(|i| !geometry.contains(i)).collect();
        let tabular = batch.project(&plain).map_err(|e| QueryError::Output(e.to_string()))?;
        let text = crate::json_objects(&tabular, &[])?;
        let rows: Vec<serde_json::Map<String, serde_json::Value>> =
            serde_json::from_slice(&[b"[".as_slice(), &text, b"]"].concat()).map_err(|e| QueryError::Output(e.to_string()))?;
        for (row, object) in rows.into_iter().enumerate() {
            if out.rows.len() >= max {
                break;
            }
            let shape = geometry.first().and_then(|&i| {
                let column = batch.column(i).as_binary_opt::<i32>()?;
                column.is_valid(row).then(|| geozero::wkb::Wkb(column.value(row)).to_geo().ok()).flatten()
            });
            out.rows.push(object);
            out.shapes.push(shape);
        }
        out.batches.push(tabular);
    }
    Ok(out)
}

/// The neighbours' rows as a notice needs them: the columns of `select` in that order, by the
/// property key, at most [`MAX_NEIGHBOURS`].
fn notice_rows(batches: &[RecordBatch], select: &[String], key: &str) -> Result<(Collected, usize), QueryError> {
    let output = |e: arrow::error::ArrowError| QueryError::Output(e.to_string());
    let projected: Vec<RecordBatch> = batches
        .iter()
        .map(|b| {
            let columns: Vec<usize> = select.iter().filter_map(|c| b.schema().index_of(c).ok()).collect();
            b.project(&columns).map_err(output)
        })
        .collect::<Result<_, _>>()?;
    let Some(first) = projected.first() else { return Ok((Collected { rows: Vec::new(), shapes: Vec::new(), batches: Vec::new() }, 0)) };
    let all = arrow::compute::concat_batches(&first.schema(), &projected).map_err(output)?;
    let order = arrow::compute::SortOptions { descending: false, nulls_first: false };
    let keys = crate::secure::natural_keys(all.column(all.schema().index_of(key).map_err(output)?))
        .map_err(|e| QueryError::Output(e.to_string()))?;
    let indices = arrow::compute::sort_to_indices(&keys, Some(order), Some(MAX_NEIGHBOURS)).map_err(output)?;
    let sorted = arrow::compute::take_record_batch(&all, &indices).map_err(output)?;
    Ok((batch_rows(&sorted, MAX_NEIGHBOURS)?, all.num_rows()))
}

/// What a neighbour search by cells needs to know.
struct Near<'a> {
    who: &'a Principal,
    purpose: Option<&'a str>,
    register: &'a DatasetRef,
    parcel: &'a geo::Geometry,
    crs: Crs,
    within: f64,
    geometry: &'a str,
    key: &'a str,
    id: &'a str,
    channel: Channel,
}

/// A geometry as SQL: `ST_SetSRID(ST_GeomFromText('…'), srid)` (WKT holds only numbers and
/// keywords, so it needs no escaping beyond the quotes it has none of).
fn geometry_sql(g: &geo::Geometry, crs: Crs) -> Result<String, QueryError> {
    use geozero::ToWkt;
    let wkt = g.to_wkt().map_err(|e| QueryError::Output(e.to_string()))?;
    Ok(format!("ST_SetSRID(ST_GeomFromText('{}'), {})", wkt.replace('\'', ""), crs.srid()))
}

/// A SQL identifier, quoted.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A SQL text literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

impl Engine {
    /// Everything `who` may see about one property for `purpose`: the rows of every dataset
    /// keyed by it, its parcel, and the zoning plans of `sources.plans` whose plan area meets
    /// the parcel. A citizen sees only a property they own (their own rows, no purpose). A
    /// property the reader sees nothing of is not found, whether it exists or not.
    pub async fn property(
        &self,
        who: &Principal,
        purpose: Option<&str>,
        id: &str,
        sources: &PropertySources,
        channel: Channel,
    ) -> Result<PropertyView, QueryError> {
        let started = tokio::time::Instant::now();
        let found = self.lookup_now(who, purpose, SubjectKind::Property, id, channel, crate::lookup::Hops::None).await?;
        if found.organizations.is_empty() {
            // As slow as a look-up that finds nothing, whatever the reason.
            crate::lookup::pad_until(started + crate::lookup::EMPTY_LOOKUP_TIME).await;
            return Err(QueryError::NotFound(format!("property {}", found.id)));
        }
        let parcel = self.parcel(&found.organizations, None).await?;
        let zoning = match &parcel {
            Some(p) => self.zoning(who, purpose, p, &sources.plans, channel).await?,
            None => Vec::new(),
        };
        Ok(PropertyView {
            purpose: (!found.purpose.is_empty()).then_some(found.purpose),
            id: found.id,
            organizations: found.organizations,
            parcel,
            zoning,
        })
    }

    /// The first parcel (an areal geometry) in the rows found, from `only` when given.
    async fn parcel(&self, organizations: &[LookupOrg], only: Option<&DatasetRef>) -> Result<Option<Parcel>, QueryError> {
        use geo::Area;
        for found in organizations.iter().flat_map(|o| &o.departments).flat_map(|d| &d.datasets) {
            if only.is_some_and(|r| r.to_string() != found.dataset) {
                continue;
            }
            let Ok(r) = found.dataset.parse::<DatasetRef>() else { continue };
            let columns = self.catalog().columns(&r).await?;
            for c in found.columns.iter().filter(|c| c.column_type == "geometry") {
                let crs = columns.iter().find(|m| m.name == c.name).and_then(|m| m.crs.as_deref()).and_then(Crs::parse);
                let Some(crs) = crs.filter(|c| !c.is_geographic()) else { continue };
                for row in found.row_objects() {
                    let Some(wkt) = row.get(&c.name).and_then(|v| v.as_str()) else { continue };
                    let Ok(shape) = geozero::wkt::Wkt(wkt).to_geo() else { continue };
                    if matches!(shape, geo::Geometry::Polygon(_) | geo::Geometry::MultiPolygon(_)) {
                        return Ok(Some(Parcel {
                            dataset: found.dataset.clone(),
                            wkt: wkt.to_string(),
                            crs: crs.to_string(),
                            area_m2: shape.unsigned_area(),
                            shape,
                        }));
                    }
                }
            }
        }
        Ok(None)
    }

    /// The plans of `plans` whose plan area meets the parcel, with the area of the parcel each
    /// covers (largest first).
    async fn zoning(
        &self,
        who: &Principal,
        purpose: Option<&str>,
        parcel: &Parcel,
        plans: &DatasetRef,
        channel: Channel,
    ) -> Result<Vec<ZoningPlan>, QueryError> {
        let columns = self.catalog().columns(plans).await?;
        let Some((geometry, crs)) = columns.iter().find_map(|c| Some((c.name.clone(), Crs::parse(c.crs.as_deref()?)?))) else {
            return Ok(Vec::new());
        };
        let from = Crs::parse(&parcel.crs).ok_or_else(|| QueryError::Output(format!("unknown CRS {}", parcel.crs)))?;
        let mut shape = parcel.shape.clone();
        crate::geo::transform_geometry(&mut shape, from, crs).map_err(QueryError::Output)?;
        let area = geo::Area::unsigned_area(&shape);
        let target = geometry_sql(&shape, crs)?;
        let g = quoted(&geometry);
        let mut select: Vec<String> = columns.iter().filter(|c| c.crs.is_none()).map(|c| quoted(&c.name)).collect();
        select.push(g.clone());
        select.push(format!("ST_Area(ST_Intersection({g}, {target})) AS \" covered\""));
        let sql = format!("SELECT {} FROM {} WHERE ST_Intersects({g}, {target})", select.join(", "), crate::sql_name(plans));
        // Open plans need no purpose; a declared one is recorded with the read all the same.
        let released = match self.sql(who, purpose, &sql, channel).await {
            Ok(r) => r,
            Err(QueryError::NotFound(_) | QueryError::PurposeNotAllowed { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let got = collect(released, 1000).await?;
        let mut out: Vec<ZoningPlan> = got
            .rows
            .into_iter()
            .zip(got.shapes)
            .map(|(mut plan, shape)| {
                let covered = plan.remove(" covered").and_then(|v| v.as_f64()).unwrap_or(0.0);
                let share = if area > 0.0 { (covered / area).clamp(0.0, 1.0) } else { 0.0 };
                ZoningPlan { plan, covered_m2: (covered * 10.0).round() / 10.0, share: (share * 1000.0).round() / 1000.0, shape }
            })
            .collect();
        out.sort_by(|a, b| b.share.total_cmp(&a.share));
        Ok(out)
    }

    /// The parcels of `sources.register` within `within` metres of the property's parcel (0:
    /// those that share a border or overlap), as the reader may see them, for the neighbour
    /// notice. Owners with protected addresses are never among them (see the module's notes).
    /// For case workers: a citizen is refused.
    pub async fn neighbours(
        &self,
        who: &Principal,
        purpose: Option<&str>,
        id: &str,
        within: f64,
        sources: &PropertySources,
        channel: Channel,
    ) -> Result<Neighbours, QueryError> {
        if matches!(who, Principal::Citizen(_) | Principal::Anonymous) {
            return Err(QueryError::NotAllowed("the neighbours of a property are listed for case workers only".into()));
        }
        if !(0.0..=MAX_NEIGHBOUR_DISTANCE).contains(&within) {
            return Err(QueryError::Invalid(format!("within: a distance from 0 to {MAX_NEIGHBOUR_DISTANCE} metres")));
        }
        let started = tokio::time::Instant::now();
        let register = &sources.register;
        // The parcel, from the register alone: the other datasets about the property are not
        // this read's business.
        let found = self.lookup_now(who, purpose, SubjectKind::Property, id, channel, crate::lookup::Hops::Only(register)).await?;
        let Some(parcel) = self.parcel(&found.organizations, Some(register)).await? else {
            crate::lookup::pad_until(started + crate::lookup::EMPTY_LOOKUP_TIME).await;
            return Err(QueryError::NotFound(format!("property {}", found.id)));
        };
        let columns = self.catalog().columns(register).await?;
        let crs = Crs::parse(&parcel.crs).ok_or_else(|| QueryError::Output(format!("unknown CRS {}", parcel.crs)))?;
        let Some(geometry) = columns.iter().find(|c| c.crs.as_deref().and_then(Crs::parse) == Some(crs)).map(|c| c.name.clone()) else {
            return Err(QueryError::NotFound(format!("property {}", found.id)));
        };
        let keys: Vec<&str> = columns.iter().filter(|c| c.subject_key == Some(SubjectKind::Property)).map(|c| c.name.as_str()).collect();
        let Some(key) = keys.first() else { return Err(QueryError::NotFound(format!("property {}", found.id))) };
        let filter = format!(
            "ST_DWithin({}, {}, {within}) AND {} <> {}",
            quoted(&geometry),
            geometry_sql(&parcel.shape, crs)?,
            quoted(key),
            literal(&found.id)
        );
        // A document that leaves the municipality: no protected owner, whoever reads. One
        // decision serves both ways of reading.
        let grant = self.grant(who, purpose, register, &register.to_string(), channel).await?.without_protected();
        if grant.min_group_size().is_some() {
            return Err(QueryError::NotAllowed(format!("{register} is shared as statistics only")));
        }
        // Only what a notice needs: the unit, its address and its owners, of what the grant releases.
        let wanted: Vec<&str> =
            [*key, sources.address.as_str(), geometry.as_str()].into_iter().chain(sources.owners.iter().map(String::as_str)).collect();
        let select: Vec<String> = wanted.iter().filter(|w| grant.columns().iter().any(|c| c.name == **w)).map(|w| w.to_string()).collect();
        let near = Near { who, purpose, register, parcel: &parcel.shape, crs, within, geometry: &geometry, key, id: &found.id, channel };
        let got = match self.neighbours_by_cells(near, &grant, &select).await? {
            Some(got) => got,
            None => {
                let query = format!("neighbours of {} within {within} in {register} (scan)", found.id);
                let released =
                    self.read_table(who, purpose, grant, None, Some(&filter), channel, &query, std::time::Instant::now()).await?;
                let mut stream = released.stream;
                let mut batches = Vec::new();
                while let Some(b) = stream.next().await.transpose()? {
                    batches.push(b);
                }
                notice_rows(&batches, &select, key)?
            }
        };
        let (got, total) = got;
        let mut csv = Vec::new();
        for (i, b) in got.batches.iter().enumerate() {
            csv.extend(crate::csv_rows(b, i == 0)?);
        }
        if got.batches.is_empty() {
            let names: Vec<&str> = select.iter().map(String::as_str).filter(|n| *n != geometry).collect();
            csv.extend(format!("{}\n", names.join(",")).as_bytes());
        }
        Ok(Neighbours {
            id: found.id,
            within_m: within,
            dataset: register.to_string(),
            truncated: total > got.rows.len(),
            found: total,
            rows: got.rows,
            protected_addresses: PROTECTED_NOTICE,
            shapes: got.shapes,
            csv,
        })
    }

    /// The neighbours through the register's grid cells in the subject index
    /// (`tverr_store::cell_keys`): the rows of the cells within reach of the parcel are read (a
    /// few pages each), through the grant's secure scan with the distance test as a filter on
    /// released values, and logged as one access — the same rows as the scan, without reading the
    /// whole register. `None` when the register's cells are not indexed (a CRS in degrees, or an
    /// index built before cells were): then the caller scans.
    async fn neighbours_by_cells(
        &self,
        near: Near<'_>,
        grant: &tverr_policy::Grant,
        select: &[String],
    ) -> Result<Option<(Collected, usize)>, QueryError> {
        use datafusion::prelude::{ident, lit};
        let started = std::time::Instant::now();
        if near.crs.is_geographic() {
            return Ok(None);
        }
        let Some(version) = self.store.indexed_versions().await?.get(&near.register.to_string()).copied() else { return Ok(None) };
        let Some(rect) = geo::BoundingRect::bounding_rect(near.parcel) else { return Ok(None) };
        let reach = [rect.min().x - near.within, rect.min().y - near.within, rect.max().x + near.within, rect.max().y + near.within];
        // At most 500 m around a parcel: a few hundred cells of 50 m.
        let mut keys = tverr_store::cells_within(reach, 1024);
        if keys.iter().any(|k| k == tverr_store::BIG_CELL) {
            return Ok(None);
        }
        keys.push(tverr_store::BIG_CELL.to_string());
        keys.push(tverr_store::CELLS_MARKER.to_string());
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let schema = self.store.schema_at(near.register, version).await?;
        let Ok(position) = schema.index_of(near.geometry) else { return Ok(None) };
        let located = self.store.locate_many(&keys).await?;
        let ours =
            |key: &str| located.get(key).into_iter().flatten().filter(|p| &p.dataset == near.register && p.position == position as i64);
        if ours(tverr_store::CELLS_MARKER).next().is_none() {
            return Ok(None);
        }
        let rows: std::collections::BTreeSet<(String, i64)> =
            keys.iter().filter(|k| **k != tverr_store::CELLS_MARKER).flat_map(|k| ours(k)).map(|p| (p.path.clone(), p.row)).collect();
        let prepared = self.prepared(grant, version, schema)?;
        let rows: Vec<(String, i64)> = rows.into_iter().collect();
        let (_, batches) = self.store.read_rows(near.register, version, &rows, Some(prepared.reads())).await?;
        let sink = crate::secure::SubjectSink::new(self.named_limit);
        let target = crate::geo::to_wkb(near.parcel).map_err(QueryError::Output)?;
        let test = crate::geo::DWithin::udf()
            .call(vec![ident(near.geometry), lit(datafusion::common::ScalarValue::Binary(Some(target))), lit(near.within)])
            .and(ident(near.key).not_eq(lit(near.id)));
        // Only the listed neighbours are released and named in the log.
        let (first, found) = prepared.apply_first(&batches, test, near.key, MAX_NEIGHBOURS, &self.lookups.state, &sink)?;
        let query = format!("neighbours of {} within {} in {}", near.id, near.within, near.register);
        let grants = vec![(grant.clone(), Some(version))];
        let intent = self.intent(near.who, near.purpose, near.channel, &query, &grants);
        let mut tracker = intent.map(|intent| self.tracker(intent, sink, started));
        let (got, _) = notice_rows(&Vec::from_iter(first), select, near.key)?;
        if let Some(t) = &mut tracker {
            t.rows = got.rows.len() as u64;
        }
        crate::lookup::log_together(tracker.iter_mut().collect()).await?;
        Ok(Some((got, found)))
    }

    /// The properties of `sources.register` whose address starts with `address` (case aside),
    /// as the reader may see them: matrikkel unit and address. A citizen finds only properties
    /// they own, and with an empty `address` gets all of them.
    pub async fn properties_by_address(
        &self,
        who: &Principal,
        purpose: Option<&str>,
        address: &str,
        sources: &PropertySources,
        channel: Channel,
    ) -> Result<Vec<BTreeMap<String, String>>, QueryError> {
        let address = address.trim();
        let citizen = matches!(who, Principal::Citizen(_));
        if !citizen && address.chars().count() < 2 {
            return Err(QueryError::Invalid("address: at least two letters".into()));
        }
        if address.len() > 200 {
            return Err(QueryError::Invalid("address: at most 200 bytes".into()));
        }
        let register = &sources.register;
        let columns = self.catalog().columns(register).await?;
        let Some(key) = columns.iter().find(|c| c.subject_key == Some(SubjectKind::Property)).map(|c| c.name.clone()) else {
            return Ok(Vec::new());
        };
        let pattern = address.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
        let filter = (!address.is_empty()).then(|| format!("lower({}) LIKE {}", quoted(&sources.address), literal(&format!("{pattern}%"))));
        let released = match who {
            Principal::Citizen(c) => {
                let own = self.policy().own_data(c.pid()).await?;
                let Some(grant) = own.into_iter().find(|g| g.dataset() == register) else { return Ok(Vec::new()) };
                let query = format!("own properties in {register}");
                self.read_table(who, None, grant, None, filter.as_deref(), channel, &query, std::time::Instant::now()).await?
            }
            _ => {
                let q = RowsQuery {
                    filter,
                    order_by: vec![(sources.address.clone(), false), (key.clone(), false)],
                    limit: Some(MAX_ADDRESS_MATCHES),
                    stable_order: true,
                    ..RowsQuery::default()
                };
                self.rows(who, purpose, register, &q, channel).await?
            }
        };
        let got = collect(released, MAX_ADDRESS_MATCHES).await?;
        let text = |v: Option<&serde_json::Value>| match v {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        Ok(got
            .rows
            .iter()
            .filter(|r| r.get(&key).is_some_and(|v| !v.is_null()))
            .map(|r| BTreeMap::from([("matrikkel".to_string(), text(r.get(&key))), ("address".to_string(), text(r.get(&sources.address)))]))
            .collect())
    }
}
