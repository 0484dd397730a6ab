//! The synthetic population and the source files generated from it.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use chrono::{Datelike, NaiveDate};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tverr_core::{Fodselsnummer, Orgnr};

use crate::names::*;
use crate::{DemoConfig, DemoError};

/// A synthetic organisasjonsnummer for Hias IKS (valid check digit; not the real one).
pub const HIAS_ORGNR: &str = "964934002";

const CENTER_X: f64 = 287_000.0;
const CENTER_Y: f64 = 6_744_500.0;

#[derive(Debug, Clone)]
struct Person {
    fnr: String,
    first: &'static str,
    last: &'static str,
    birth: NaiveDate,
    household: u32,
    protection: &'static str,
}

#[derive(Debug, Clone)]
struct Household {
    street: usize,
    number: u32,
    gnr: u32,
    bnr: u32,
    x: f64,
    y: f64,
    members: Vec<u32>,
    owner_org: Option<String>,
}

impl Household {
    fn matrikkel(&self) -> String {
        format!("3403-{}/{}", self.gnr, self.bnr)
    }
    fn address(&self) -> String {
        format!("{} {}", STREETS[self.street].0, self.number)
    }
}

/// One child's kindergarten admission: the child, the guardian, the age and the place, if any.
struct Admission {
    child: u32,
    guardian: u32,
    age: i32,
    place: Option<(usize, NaiveDate, &'static str)>,
}

/// The generated municipality, ready to be written as source files.
#[derive(Debug)]
pub struct Population {
    persons: Vec<Person>,
    households: Vec<Household>,
    seed: u64,
}

fn age_on(birth: NaiveDate, day: NaiveDate) -> i32 {
    let mut age = day.year() - birth.year();
    if (day.month(), day.day()) < (birth.month(), birth.day()) {
        age -= 1;
    }
    age
}

fn reference_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 1, 1).expect("valid date")
}

/// `mor` or `far` by the person number (the third digit of the individual number is even for
/// women).
fn parent_role(fnr: &str) -> &'static str {
    if (fnr.as_bytes()[8] - b'0').is_multiple_of(2) { "mor" } else { "far" }
}

/// The middle of street `i` (of [`STREETS`]): spread over the town on a golden-angle spiral,
/// within 5 km of the centre.
pub(crate) fn street_centre(i: usize) -> (f64, f64) {
    let angle = i as f64 * 2.399_963;
    let radius = 600.0 + (i as f64 * 4513.0) % 4400.0;
    ((CENTER_X + radius * angle.cos()).round(), (CENTER_Y + radius * angle.sin()).round())
}

/// A valid synthetic orgnr derived from a number (check digit computed, 10 skipped).
fn synthetic_orgnr(n: u32) -> String {
    let mut base = 910_000_000 + n * 10;
    loop {
        let s = format!("{:08}", base / 10);
        for k in 0..10 {
            let candidate = format!("{s}{k}");
            if Orgnr::parse(&candidate).is_ok() {
                return candidate;
            }
        }
        base += 10;
    }
}

impl Population {
    /// Generates persons and households deterministically from the config.
    pub fn generate(config: &DemoConfig) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let today = reference_day();
        let mut persons: Vec<Person> = Vec::with_capacity(config.persons);
        let mut households: Vec<Household> = Vec::with_capacity(config.persons / 2 + 1);
        let mut used = std::collections::HashSet::with_capacity(config.persons);
        let mut new_person = |rng: &mut ChaCha8Rng, age: i32, household: u32| -> Person {
            loop {
                let birth = today - chrono::Duration::days(i64::from(age) * 365 + rng.random_range(0..365));
                let yy = birth.year() % 100;
                let individual: u16 = if birth.year() >= 2000 { rng.random_range(500..1000) } else { rng.random_range(0..500) };
                let ddmmyy = format!("{:02}{:02}{:02}", birth.day(), birth.month() + 80, yy);
                if let Some(f) = Fodselsnummer::from_parts(&ddmmyy, individual)
                    && used.insert(f.as_str().to_string())
                {
                    let female = individual.is_multiple_of(2);
                    let first = if female {
                        FIRST_FEMALE[rng.random_range(0..FIRST_FEMALE.len())]
                    } else {
                        FIRST_MALE[rng.random_range(0..FIRST_MALE.len())]
                    };
                    let p: f64 = rng.random();
                    let protection = if p < 0.002 {
                        "strengt_fortrolig"
                    } else if p < 0.006 {
                        "fortrolig"
                    } else {
                        "ugradert"
                    };
                    return Person {
                        fnr: f.as_str().to_string(),
                        first,
                        last: LAST[rng.random_range(0..LAST.len())],
                        birth,
                        household,
                        protection,
                    };
                }
            }
        };
        // Property numbers leave gaps, as real ones do (parcels merged, numbers retired), from
        // their own generator so the population stays the same: a number missing from what a
        // reader sees is no sign of a protected household.
        let mut numbering = ChaCha8Rng::seed_from_u64(config.seed ^ 0x6d61_7472_696b_6b65);
        let (mut gnr, mut bnr) = (1u32, 0u32);
        while persons.len() < config.persons {
            let h = households.len() as u32;
            bnr += numbering.random_range(1..=4);
            if bnr > 900 {
                gnr += 1;
                bnr = numbering.random_range(1..=4);
            }
            let street = rng.random_range(0..STREETS.len());
            let angle: f64 = rng.random::<f64>() * std::f64::consts::TAU;
            let radius: f64 = rng.random::<f64>().sqrt() * 6000.0;
            let mut household = Household {
                street,
                number: rng.random_range(1..140),
                gnr,
                bnr,
                x: CENTER_X + radius * angle.cos(),
                y: CENTER_Y + radius * angle.sin(),
                members: Vec::new(),
                owner_org: None,
            };
            let size = match rng.random_range(0..100) {
                0..=39 => 1,
                40..=69 => 2,
                70..=84 => 3,
                85..=95 => 4,
                _ => 5,
            }
            .min(config.persons - persons.len());
            let adult_age = rng.random_range(20..95);
            for m in 0..size {
                let age = match m {
                    0 => adult_age,
                    1 => (adult_age + rng.random_range(-5..6)).clamp(19, 99),
                    _ => rng.random_range(0..18.min(adult_age - 18).max(1)),
                };
                household.members.push(persons.len() as u32);
                persons.push(new_person(&mut rng, age, h));
            }
            if rng.random_range(0..100) < 3 {
                household.owner_org = Some(synthetic_orgnr(rng.random_range(0..40)));
            }
            households.push(household);
        }
        Self { persons, households, seed: config.seed }
    }

    /// Writes every demo source file into `dir`.
    pub fn write_files(&self, dir: &Path) -> Result<(), DemoError> {
        self.write_innbyggere(dir)?;
        self.write_barnehager(dir)?;
        self.write_barnehageplasser(dir)?;
        self.write_barnehagesoknader(dir)?;
        self.write_husholdningsinntekt(dir)?;
        Self::write_barnehagepriser(dir)?;
        self.write_familierelasjoner(dir)?;
        self.write_helse(dir)?;
        Self::write_gater(dir)?;
        self.write_byggesaker(dir)?;
        self.write_eiendommer(dir)?;
        self.write_reguleringsplaner(dir)?;
        self.write_hjemmetjenester(dir)?;
        self.write_vann(dir)?;
        Self::write_kommunegrense(dir)?;
        Ok(())
    }

    /// The kommune's outline: a synthetic, irregular ring around every place the demo puts
    /// anything (properties lie within 6 km of the centre, plans within about 8 km), so maps
    /// have the municipality to draw their data on.
    fn write_kommunegrense(dir: &Path) -> Result<(), DemoError> {
        let ring: Vec<[f64; 2]> = (0..=72)
            .map(|i| {
                let a = f64::from(i % 72) / 72.0 * std::f64::consts::TAU;
                let r = 9_200.0 + 600.0 * (3.0 * a + 1.0).sin() + 400.0 * (5.0 * a + 2.0).cos();
                [(CENTER_X + r * a.cos()).round(), (CENTER_Y + r * a.sin()).round()]
            })
            .collect();
        let collection = serde_json::json!({
            "type": "FeatureCollection",
            "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::25833"}},
            "features": [{
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {"kommunenummer": "3403", "navn": "Hamar"},
            }],
        });
        std::fs::write(dir.join("kommunegrense.geojson"), serde_json::to_vec(&collection).map_err(std::io::Error::other)?)?;
        Ok(())
    }

    fn rng(&self, salt: u64) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(self.seed.wrapping_mul(31).wrapping_add(salt))
    }

    fn kindergarten_count(&self) -> usize {
        (self.persons.len() / 1000).clamp(8, 5000)
    }

    fn kindergarten_name(i: usize) -> String {
        let base = KINDERGARTEN_PREFIX[i % KINDERGARTEN_PREFIX.len()];
        if i < KINDERGARTEN_PREFIX.len() {
            format!("{base} barnehage")
        } else {
            format!("{base} barnehage {}", i / KINDERGARTEN_PREFIX.len() + 1)
        }
    }

    /// The population register export: Windows-1252, `;`, `dd.mm.yyyy`, as such systems write.
    fn write_innbyggere(&self, dir: &Path) -> Result<(), DemoError> {
        let mut w = BufWriter::new(File::create(dir.join("innbyggere.csv"))?);
        let mut line = String::new();
        let put = |w: &mut BufWriter<File>, s: &str| -> std::io::Result<()> {
            let (bytes, _, _) = encoding_rs::WINDOWS_1252.encode(s);
            w.write_all(&bytes)
        };
        put(&mut w, "fodselsnummer;fornavn;etternavn;fodselsdato;adresse;postnummer;poststed;bydel;adressebeskyttelse\r\n")?;
        for p in &self.persons {
            let h = &self.households[p.household as usize];
            let (_, bydel, postnr) = STREETS[h.street];
            line.clear();
            line.push_str(&format!(
                "{};{};{};{};{};{};HAMAR;{};{}\r\n",
                p.fnr,
                p.first,
                p.last,
                p.birth.format("%d.%m.%Y"),
                h.address(),
                postnr,
                bydel,
                p.protection
            ));
            put(&mut w, &line)?;
        }
        w.flush()?;
        Ok(())
    }

    fn write_barnehager(&self, dir: &Path) -> Result<(), DemoError> {
        let mut rng = self.rng(1);
        let mut w = BufWriter::new(File::create(dir.join("barnehager.geojson"))?);
        write!(
            w,
            "{{\"type\":\"FeatureCollection\",\"crs\":{{\"type\":\"name\",\"properties\":{{\"name\":\"urn:ogc:def:crs:EPSG::25833\"}}}},\"features\":["
        )?;
        // Kind and opening hours from a generator of their own, so the rest stays as it was.
        let mut hours = self.rng(12);
        for i in 0..self.kindergarten_count() {
            let street = rng.random_range(0..STREETS.len());
            let (sname, bydel, _) = STREETS[street];
            let (sx, sy) = street_centre(street);
            let capacity: i64 = rng.random_range(30..130);
            let free: i64 = if rng.random_range(0..3) == 0 { 0 } else { rng.random_range(0..12) };
            let (age_from, age_to) = if rng.random_range(0..4) == 0 { (0, 3) } else { (1, 5) };
            // On its street: within 350 m of the street's middle.
            let angle: f64 = rng.random::<f64>() * std::f64::consts::TAU;
            let radius: f64 = rng.random::<f64>().sqrt() * 350.0;
            let kind = KINDERGARTEN_KINDS[hours.random_range(0..KINDERGARTEN_KINDS.len())];
            let opens = ["06:45", "07:00", "07:00", "07:15", "07:30"][hours.random_range(0..5)];
            let closes = ["16:15", "16:30", "16:30", "16:45", "17:00"][hours.random_range(0..5)];
            let feature = serde_json::json!({
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [
                    (sx + radius * angle.cos()).round(), (sy + radius * angle.sin()).round()
                ]},
                "properties": {
                    "navn": Self::kindergarten_name(i),
                    "adresse": format!("{sname} {}", rng.random_range(1..80)),
                    "bydel": bydel,
                    "eierform": if rng.random_range(0..2) == 0 { "kommunal" } else { "privat" },
                    "barnehagetype": kind,
                    "apner": opens,
                    "stenger": closes,
                    "alder_fra": age_from,
                    "alder_til": age_to,
                    "kapasitet": capacity,
                    "ledige_plasser": free,
                }
            });
            if i > 0 {
                w.write_all(b",")?;
            }
            w.write_all(b"\n")?;
            serde_json::to_writer(&mut w, &feature).map_err(std::io::Error::other)?;
        }
        w.write_all(b"\n]}\n")?;
        w.flush()?;
        Ok(())
    }

    /// Every child aged 0–5 of every household, with what the kindergarten admission decided:
    /// a place (kindergarten, start, hours) for most children aged 1–5, none for the others.
    fn admissions(&self) -> Vec<Admission> {
        let mut rng = self.rng(2);
        let today = reference_day();
        let count = self.kindergarten_count();
        let mut out = Vec::new();
        for h in &self.households {
            for m in &h.members[1..] {
                let child = &self.persons[*m as usize];
                let age = age_on(child.birth, today);
                let guardian = h.members[0];
                if !(0..=5).contains(&age) {
                    continue;
                }
                if age == 0 || rng.random_range(0..10) == 0 {
                    out.push(Admission { child: *m, guardian, age, place: None });
                    continue;
                }
                let start = NaiveDate::from_ymd_opt(today.year() - rng.random_range(0..age.min(4) + 1), 8, 15).expect("valid");
                let hours = ["41", "41", "41", "37,5", "30", "20"][rng.random_range(0..6)];
                out.push(Admission { child: *m, guardian, age, place: Some((rng.random_range(0..count), start, hours)) });
            }
        }
        out
    }

    /// UTF-8 with BOM and `;`, as Excel saves "CSV UTF-8".
    fn write_barnehageplasser(&self, dir: &Path) -> Result<(), DemoError> {
        let mut w = BufWriter::new(File::create(dir.join("barnehageplasser.csv"))?);
        w.write_all(b"\xEF\xBB\xBFbarn_fnr;foresatt_fnr;barnehage;startdato;timer_per_uke\r\n")?;
        for a in self.admissions() {
            let Some((kindergarten, start, hours)) = a.place else { continue };
            writeln!(
                w,
                "{};{};{};{};{}\r",
                self.persons[a.child as usize].fnr,
                self.persons[a.guardian as usize].fnr,
                Self::kindergarten_name(kindergarten),
                start.format("%d.%m.%Y"),
                hours
            )?;
        }
        w.flush()?;
        Ok(())
    }

    /// Applications for a kindergarten place: every child without one (the youngest for the
    /// main admission in August, the others on the waiting list or with an offer), and some
    /// children with a place who applied to move.
    fn write_barnehagesoknader(&self, dir: &Path) -> Result<(), DemoError> {
        let mut rng = self.rng(9);
        let count = self.kindergarten_count();
        let mut w = BufWriter::new(File::create(dir.join("barnehagesoknader.csv"))?);
        writeln!(w, "soknad_id;barn_fnr;foresatt_fnr;onsket_barnehage;onsket_start;status;tilbudt_barnehage;svarfrist")?;
        let today = reference_day();
        let mut serial = 0u32;
        for a in self.admissions() {
            let moving = a.place.is_some() && rng.random_range(0..12) == 0;
            if a.place.is_some() && !moving {
                continue;
            }
            serial += 1;
            let wished = rng.random_range(0..count);
            let start = if a.age == 0 {
                NaiveDate::from_ymd_opt(today.year(), 8, 1).expect("valid")
            } else {
                today + chrono::Duration::days(rng.random_range(30..200))
            };
            let (status, offered, deadline) = match rng.random_range(0..10) {
                0..=3 => ("Mottatt", None, None),
                4..=5 => ("Venteliste", None, None),
                6..=8 => {
                    let offered = if rng.random_range(0..3) == 0 { rng.random_range(0..count) } else { wished };
                    ("Tilbud sendt", Some(offered), Some(today + chrono::Duration::days(rng.random_range(5..21))))
                }
                _ => ("Takket ja", Some(wished), None),
            };
            writeln!(
                w,
                "S-{}-{serial:05};{};{};{};{};{status};{};{}",
                today.year(),
                self.persons[a.child as usize].fnr,
                self.persons[a.guardian as usize].fnr,
                Self::kindergarten_name(wished),
                start.format("%d.%m.%Y"),
                offered.map(Self::kindergarten_name).unwrap_or_default(),
                deadline.map(|d| d.format("%d.%m.%Y").to_string()).unwrap_or_default(),
            )?;
        }
        w.flush()?;
        Ok(())
    }

    /// Household income as Skatteetaten reports it for reduced parental payment: one row per
    /// guardian of a child aged 0–5.
    fn write_husholdningsinntekt(&self, dir: &Path) -> Result<(), DemoError> {
        let mut rng = self.rng(10);
        let mut w = BufWriter::new(File::create(dir.join("husholdningsinntekt.csv"))?);
        writeln!(w, "foresatt_fnr;inntektsaar;samlet_inntekt")?;
        let mut seen = std::collections::HashSet::new();
        for a in self.admissions() {
            if !seen.insert(a.guardian) {
                continue;
            }
            let income: u32 =
                if rng.random_range(0..5) == 0 { rng.random_range(180_000..400_000) } else { rng.random_range(400_000..1_600_000) };
            writeln!(w, "{};2024;{}", self.persons[a.guardian as usize].fnr, income / 1000 * 1000)?;
        }
        w.flush()?;
        Ok(())
    }

    /// The national rules for parental payment, as an open table the kommune keeps.
    fn write_barnehagepriser(dir: &Path) -> Result<(), DemoError> {
        let mut w = BufWriter::new(File::create(dir.join("barnehagepriser.csv"))?);
        writeln!(
            w,
            "gjelder_fra;makspris_per_maaned;betalingsmaaneder;maks_andel_av_inntekt_prosent;soskenmoderasjon_barn_2_prosent;soskenmoderasjon_barn_3_prosent;kilde"
        )?;
        writeln!(w, "01.08.2024;2000;11;6;30;50;https://lovdata.no/forskrift/2005-12-16-1478")?;
        w.flush()?;
        Ok(())
    }

    /// Parents and children as the population register records them: both adults of a
    /// household are parents of its children; some older people have adult children elsewhere.
    fn write_familierelasjoner(&self, dir: &Path) -> Result<(), DemoError> {
        let mut rng = self.rng(11);
        let today = reference_day();
        let mut w = BufWriter::new(File::create(dir.join("familierelasjoner.csv"))?);
        writeln!(w, "barn_fnr;forelder_fnr;relasjon")?;
        let adults: Vec<u32> =
            (0..self.persons.len() as u32).filter(|p| (18..36).contains(&age_on(self.persons[*p as usize].birth, today))).collect();
        for h in &self.households {
            let parents: Vec<u32> =
                h.members.iter().take(2).copied().filter(|p| age_on(self.persons[*p as usize].birth, today) >= 18).collect();
            for child in h.members.iter().skip(2) {
                for parent in &parents {
                    let role = parent_role(&self.persons[*parent as usize].fnr);
                    writeln!(w, "{};{};{role}", self.persons[*child as usize].fnr, self.persons[*parent as usize].fnr)?;
                }
            }
            let head = h.members[0];
            if age_on(self.persons[head as usize].birth, today) >= 50 && !adults.is_empty() && rng.random_range(0..3) == 0 {
                let child = adults[rng.random_range(0..adults.len())];
                let role = parent_role(&self.persons[head as usize].fnr);
                writeln!(w, "{};{};{role}", self.persons[child as usize].fnr, self.persons[head as usize].fnr)?;
            }
        }
        w.flush()?;
        Ok(())
    }

    /// The streets of the town with their middle: the open address register at street level,
    /// which places an address for a distance without naming anyone who lives there.
    fn write_gater(dir: &Path) -> Result<(), DemoError> {
        let features: Vec<serde_json::Value> = STREETS
            .iter()
            .enumerate()
            .map(|(i, (name, bydel, postnr))| {
                let (x, y) = street_centre(i);
                serde_json::json!({
                    "type": "Feature",
                    "geometry": {"type": "Point", "coordinates": [x, y]},
                    "properties": {"gatenavn": name, "bydel": bydel, "postnummer": postnr, "poststed": "HAMAR"},
                })
            })
            .collect();
        let collection = serde_json::json!({
            "type": "FeatureCollection",
            "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::25833"}},
            "features": features,
        });
        std::fs::write(dir.join("gater.geojson"), serde_json::to_vec(&collection).map_err(std::io::Error::other)?)?;
        Ok(())
    }

    /// The health services (open), the GPs with free places on their lists (open) and the
    /// health centre's appointments for children (special-category data).
    fn write_helse(&self, dir: &Path) -> Result<(), DemoError> {
        let mut rng = self.rng(13);
        let point = |street: usize, rng: &mut ChaCha8Rng| {
            let (x, y) = street_centre(street);
            serde_json::json!({"type": "Point", "coordinates": [(x + rng.random_range(-200.0..200.0)).round(), (y + rng.random_range(-200.0..200.0)).round()]})
        };
        let mut features = Vec::new();
        for (i, service) in HEALTH_SERVICES.iter().enumerate() {
            let street = (i * 7 + 3) % STREETS.len();
            let waiting = service.waiting.map(|(from, to)| rng.random_range(from..=to));
            features.push(serde_json::json!({
                "type": "Feature",
                "geometry": point(street, &mut rng),
                "properties": {
                    "navn": service.name, "tjenestetype": service.kind, "beskrivelse": service.what,
                    "hvem_kan_faa": service.who, "apningstider": service.hours,
                    "adresse": format!("{} {}", STREETS[street].0, 5 + i * 3), "telefon": service.phone,
                    "ventetid_dager": waiting,
                },
            }));
        }
        let crs = serde_json::json!({"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::25833"}});
        let services = serde_json::json!({"type": "FeatureCollection", "crs": crs, "features": features});
        std::fs::write(dir.join("helsetjenester.geojson"), serde_json::to_vec(&services).map_err(std::io::Error::other)?)?;

        let doctors = (self.persons.len() / 1100).clamp(6, 5000);
        let mut features = Vec::new();
        for i in 0..doctors {
            let street = rng.random_range(0..STREETS.len());
            let first = if rng.random_range(0..2) == 0 { FIRST_FEMALE } else { FIRST_MALE };
            let list: i64 = rng.random_range(700..1400);
            let free: i64 = if rng.random_range(0..3) == 0 { rng.random_range(1..60) } else { 0 };
            features.push(serde_json::json!({
                "type": "Feature",
                "geometry": point(street, &mut rng),
                "properties": {
                    "lege": format!("{} {}", first[rng.random_range(0..first.len())], LAST[rng.random_range(0..LAST.len())]),
                    "legekontor": format!("{} legesenter", MEDICAL_CENTRES[i % MEDICAL_CENTRES.len()]),
                    "adresse": format!("{} {}", STREETS[street].0, rng.random_range(1..60)),
                    "listelengde": list, "ledige_plasser": free,
                },
            }));
        }
        let gps = serde_json::json!({"type": "FeatureCollection", "crs": crs, "features": features});
        std::fs::write(dir.join("fastleger.geojson"), serde_json::to_vec(&gps).map_err(std::io::Error::other)?)?;

        let today = reference_day();
        let mut w = BufWriter::new(File::create(dir.join("helsestasjon_timer.csv"))?);
        writeln!(w, "barn_fnr;tidspunkt;konsultasjon;sted;status")?;
        for p in &self.persons {
            let age_days = (today - p.birth).num_days();
            if !(0..6 * 365).contains(&age_days) {
                continue;
            }
            // The programme's consultations the child has had (and the next one, booked).
            for (days, what) in HEALTH_CENTRE_PROGRAMME {
                let at = p.birth + chrono::Duration::days(*days);
                let booked = at > today;
                if booked && at > today + chrono::Duration::days(120) {
                    break;
                }
                let time =
                    format!("{}T{:02}:{:02}:00", at.format("%Y-%m-%d"), rng.random_range(8..15), [0, 15, 30, 45][rng.random_range(0..4)]);
                writeln!(w, "{};{time};{what};Helsestasjon Hamar sentrum;{}", p.fnr, if booked { "Bestilt" } else { "Gjennomført" })?;
                if booked {
                    break;
                }
            }
        }
        w.flush()?;
        Ok(())
    }

    fn write_byggesaker(&self, dir: &Path) -> Result<(), DemoError> {
        let mut rng = self.rng(3);
        let mut book = rust_xlsxwriter::Workbook::new();
        let date_format = rust_xlsxwriter::Format::new().set_num_format("dd.mm.yyyy");
        let sheet = book.add_worksheet_with_constant_memory()?;
        sheet.set_name("Byggesaker")?;
        for (c, h) in ["saksnr", "matrikkel", "soker_navn", "soker_fnr", "sakstype", "status", "mottatt", "vedtatt"].iter().enumerate() {
            sheet.write_string(0, c as u16, *h)?;
        }
        let mut row = 1u32;
        let mut serial = std::collections::HashMap::new();
        for h in &self.households {
            if rng.random_range(0..10) != 0 {
                continue;
            }
            let applicant = &self.persons[h.members[0] as usize];
            let received =
                NaiveDate::from_ymd_opt(rng.random_range(2019..2026), rng.random_range(1..13), rng.random_range(1..29)).expect("valid");
            let n = serial.entry(received.year()).or_insert(0u32);
            *n += 1;
            let status = BUILDING_CASE_STATUS[rng.random_range(0..BUILDING_CASE_STATUS.len())];
            sheet.write_string(row, 0, format!("{}/{}", received.year() % 100, *n))?;
            sheet.write_string(row, 1, h.matrikkel())?;
            sheet.write_string(row, 2, format!("{} {}", applicant.first, applicant.last))?;
            sheet.write_string(row, 3, &applicant.fnr)?;
            sheet.write_string(row, 4, BUILDING_CASE_TYPES[rng.random_range(0..BUILDING_CASE_TYPES.len())])?;
            sheet.write_string(row, 5, status)?;
            sheet.write_datetime_with_format(row, 6, received, &date_format)?;
            if matches!(status, "Innvilget" | "Avslått") {
                let decided = received + chrono::Duration::days(rng.random_range(14..120));
                sheet.write_datetime_with_format(row, 7, decided, &date_format)?;
            }
            row += 1;
        }
        book.save(dir.join("byggesaker.xlsx"))?;
        Ok(())
    }

    fn write_eiendommer(&self, dir: &Path) -> Result<(), DemoError> {
        let mut rng = self.rng(4);
        let mut w = BufWriter::new(File::create(dir.join("eiendommer.geojson"))?);
        write!(
            w,
            "{{\"type\":\"FeatureCollection\",\"crs\":{{\"type\":\"name\",\"properties\":{{\"name\":\"urn:ogc:def:crs:EPSG::25833\"}}}},\"features\":["
        )?;
        for (i, h) in self.households.iter().enumerate() {
            let side: f64 = rng.random_range(15.0..45.0);
            let (x, y) = (h.x.round(), h.y.round());
            let ring = [[x, y], [x + side, y], [x + side, y + side], [x, y + side], [x, y]];
            let owner = h.owner_org.is_none().then(|| &self.persons[h.members[0] as usize]);
            // The property tax valuation (takst): a price per square metre by district and size.
            let per_m2: f64 = rng.random_range(18_000.0..42_000.0);
            let feature = serde_json::json!({
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {
                    "matrikkel": h.matrikkel(),
                    "adresse": h.address(),
                    "areal_m2": (side * side * 10.0).round() / 10.0,
                    "eier_fnr": owner.map(|p| p.fnr.clone()),
                    "eier_navn": owner.map(|p| format!("{} {}", p.first, p.last)),
                    "eier_orgnr": h.owner_org,
                    "takst": ((side * side * per_m2) / 10_000.0).round() * 10_000.0,
                }
            });
            if i > 0 {
                w.write_all(b",")?;
            }
            w.write_all(b"\n")?;
            serde_json::to_writer(&mut w, &feature).map_err(std::io::Error::other)?;
        }
        w.write_all(b"\n]}\n")?;
        w.flush()?;
        Ok(())
    }

    fn write_reguleringsplaner(&self, dir: &Path) -> Result<(), DemoError> {
        let mut rng = self.rng(5);
        let mut w = BufWriter::new(File::create(dir.join("reguleringsplaner.geojson"))?);
        write!(
            w,
            "{{\"type\":\"FeatureCollection\",\"crs\":{{\"type\":\"name\",\"properties\":{{\"name\":\"urn:ogc:def:crs:EPSG::25833\"}}}},\"features\":["
        )?;
        let names = [
            "Vikingskipet",
            "Åkersvika",
            "Espern",
            "Jernbaneområdet",
            "Ingeberg sentrum",
            "Børstad",
            "Prestrud",
            "Ridabu",
            "Stangebyen",
            "Kaupangen",
        ];
        for i in 0..25 {
            let (x, y) = (CENTER_X + rng.random_range(-5000.0..5000.0), CENTER_Y + rng.random_range(-5000.0..5000.0));
            let (dx, dy) = (rng.random_range(150.0..700.0), rng.random_range(150.0..700.0));
            let ring = [
                [x.round(), y.round()],
                [(x + dx).round(), y.round()],
                [(x + dx).round(), (y + dy).round()],
                [x.round(), (y + dy).round()],
                [x.round(), y.round()],
            ];
            let status = ["Vedtatt", "Vedtatt", "Forslag", "Under arbeid"][rng.random_range(0..4)];
            let feature = serde_json::json!({
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {
                    "planid": format!("3403-{:04}", 2000 + i * 7),
                    "plannavn": format!("Reguleringsplan for {}", names[i % names.len()]),
                    "status": status,
                    "vedtaksdato": (status == "Vedtatt").then(|| format!("{}-{:02}-{:02}", rng.random_range(2005..2026), rng.random_range(1..13), rng.random_range(1..29))),
                }
            });
            if i > 0 {
                w.write_all(b",")?;
            }
            w.write_all(b"\n")?;
            serde_json::to_writer(&mut w, &feature).map_err(std::io::Error::other)?;
        }
        w.write_all(b"\n]}\n")?;
        w.flush()?;
        Ok(())
    }

    fn write_hjemmetjenester(&self, dir: &Path) -> Result<(), DemoError> {
        let mut rng = self.rng(6);
        let mut w = BufWriter::new(File::create(dir.join("hjemmetjenester.csv"))?);
        writeln!(w, "fodselsnummer;tjeneste;vedtaksdato;timer_per_uke")?;
        let today = reference_day();
        for p in &self.persons {
            if age_on(p.birth, today) < 67 || rng.random_range(0..100) >= 8 {
                continue;
            }
            let decided =
                NaiveDate::from_ymd_opt(rng.random_range(2018..2026), rng.random_range(1..13), rng.random_range(1..29)).expect("valid");
            let hours = f64::from(rng.random_range(1..60)) / 2.0;
            writeln!(
                w,
                "{};{};{};{}",
                p.fnr,
                HOME_CARE_SERVICES[rng.random_range(0..HOME_CARE_SERVICES.len())],
                decided.format("%d.%m.%Y"),
                format!("{hours:.1}").replace('.', ",")
            )?;
        }
        w.flush()?;
        Ok(())
    }

    fn write_vann(&self, dir: &Path) -> Result<(), DemoError> {
        let mut rng = self.rng(7);
        let mut meters = BufWriter::new(File::create(dir.join("vannmalere.csv"))?);
        let mut readings = BufWriter::new(File::create(dir.join("vannmaler_avlesninger.csv"))?);
        writeln!(meters, "maler_id;matrikkel;installert")?;
        writeln!(readings, "maler_id;maaned;forbruk_m3")?;
        // Meters are listed in no particular order under serial numbers of their own, so
        // neither a meter's place nor its number points to a property (the numbers of a
        // protected household's meter would otherwise be the gap in a sequence).
        let mut order: Vec<usize> = (0..self.households.len()).collect();
        let mut serials = std::collections::HashSet::with_capacity(order.len());
        let mut numbering = self.rng(8);
        order.sort_by_cached_key(|_| numbering.random::<u64>());
        for h in order.into_iter().map(|i| &self.households[i]) {
            let id = loop {
                let serial = numbering.random_range(1_000_000..10_000_000u32);
                if serials.insert(serial) {
                    break format!("HIAS-{serial}");
                }
            };
            let installed = NaiveDate::from_ymd_opt(rng.random_range(2005..2020), rng.random_range(1..13), 1).expect("valid");
            writeln!(meters, "{id};{};{}", h.matrikkel(), installed.format("%d.%m.%Y"))?;
            let base = 3.0 + 4.0 * h.members.len() as f64;
            for year in 2020..2026 {
                for month in 1..=12u32 {
                    let season = if (6..=8).contains(&month) { 1.3 } else { 1.0 };
                    let v = base * season * rng.random_range(0.8..1.2);
                    writeln!(readings, "{id};{year}-{month:02}-01;{}", format!("{v:.2}").replace('.', ","))?;
                }
            }
        }
        meters.flush()?;
        readings.flush()?;
        let mut w = BufWriter::new(File::create(dir.join("vannkvalitet.ndjson"))?);
        let stations = [("Mjøsa Hamar inntak", "S-01"), ("Stavsberg høydebasseng", "S-02"), ("Ingeberg nett", "S-03")];
        let params = [("temperatur", "°C", 4.0, 3.0), ("pH", "pH", 7.4, 0.2), ("turbiditet", "NTU", 0.3, 0.15)];
        let mut day = NaiveDate::from_ymd_opt(2020, 1, 1).expect("valid");
        let end = NaiveDate::from_ymd_opt(2026, 1, 1).expect("valid");
        while day < end {
            for (station, sensor) in stations {
                for (param, unit, mean, spread) in params {
                    let seasonal = if param == "temperatur" {
                        mean + 6.0 * ((f64::from(day.ordinal()) - 100.0) / 365.0 * std::f64::consts::TAU).sin().max(-0.5)
                    } else {
                        mean
                    };
                    let v = seasonal + rng.random_range(-spread..spread);
                    let rec = serde_json::json!({
                        "stasjon": station, "sensor_id": format!("{sensor}-{param}"),
                        "tidspunkt": format!("{}T06:00:00Z", day.format("%Y-%m-%d")),
                        "parameter": param, "verdi": (v * 100.0).round() / 100.0, "enhet": unit,
                    });
                    serde_json::to_writer(&mut w, &rec).map_err(std::io::Error::other)?;
                    w.write_all(b"\n")?;
                }
            }
            day = day.succ_opt().expect("valid");
        }
        w.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn neither_a_missing_number_nor_a_meter_number_points_to_a_household() {
        let population = Population::generate(&DemoConfig { persons: 3000, seed: 7 });
        let numbers: Vec<(u32, u32)> = population.households.iter().map(|h| (h.gnr, h.bnr)).collect();
        let gaps = numbers.windows(2).filter(|w| w[0].0 == w[1].0 && w[1].1 > w[0].1 + 1).count();
        assert!(gaps * 2 > numbers.len(), "property numbers have gaps throughout: {gaps} of {}", numbers.len());
        assert_eq!(numbers.iter().collect::<std::collections::HashSet<_>>().len(), numbers.len(), "every property number once");

        let dir = tempfile::tempdir().expect("temp dir");
        population.write_vann(dir.path()).expect("written");
        let meters = std::fs::read_to_string(dir.path().join("vannmalere.csv")).expect("meters");
        let place: HashMap<String, usize> = population.households.iter().enumerate().map(|(i, h)| (h.matrikkel(), i)).collect();
        // Rank of each meter's serial against its property's place in the register: no order
        // between them (a rank correlation near zero), and none between a meter's line and its
        // property's place either.
        let rows: Vec<(u32, usize)> = meters
            .lines()
            .skip(1)
            .map(|l| {
                let f: Vec<&str> = l.split(';').collect();
                (f[0].trim_start_matches("HIAS-").parse().expect("serial"), place[f[1]])
            })
            .collect();
        assert_eq!(rows.len(), population.households.len());
        let rank_correlation = |pairs: &[(f64, f64)]| {
            let n = pairs.len() as f64;
            let mean = |v: &dyn Fn(&(f64, f64)) -> f64| pairs.iter().map(v).sum::<f64>() / n;
            let (mx, my) = (mean(&|p| p.0), mean(&|p| p.1));
            let cov: f64 = pairs.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
            let sx: f64 = pairs.iter().map(|p| (p.0 - mx).powi(2)).sum::<f64>().sqrt();
            let sy: f64 = pairs.iter().map(|p| (p.1 - my).powi(2)).sum::<f64>().sqrt();
            cov / (sx * sy)
        };
        let mut by_serial: Vec<usize> = (0..rows.len()).collect();
        by_serial.sort_by_key(|&i| rows[i].0);
        let serial_vs_place: Vec<(f64, f64)> = by_serial.iter().enumerate().map(|(rank, &i)| (rank as f64, rows[i].1 as f64)).collect();
        let line_vs_place: Vec<(f64, f64)> = rows.iter().enumerate().map(|(line, r)| (line as f64, r.1 as f64)).collect();
        assert!(rank_correlation(&serial_vs_place).abs() < 0.1, "serials follow the register: {}", rank_correlation(&serial_vs_place));
        assert!(rank_correlation(&line_vs_place).abs() < 0.1, "lines follow the register: {}", rank_correlation(&line_vs_place));
    }
}
