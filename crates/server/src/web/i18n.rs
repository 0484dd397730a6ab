//! The web pages' words in Norwegian bokmål (first) and English. Every text a page shows comes
//! from [`STRINGS`] by key; a key without an entry shows as itself, which a test catches.

use std::collections::HashMap;
use std::sync::OnceLock;

/// A language of the pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    /// Norwegian bokmål, the default.
    #[default]
    Nb,
    /// English.
    En,
}

impl Lang {
    /// The BCP 47 code (`nb`, `en`).
    pub fn code(self) -> &'static str {
        match self {
            Lang::Nb => "nb",
            Lang::En => "en",
        }
    }

    /// `nb`, `no` or `en`.
    pub fn parse(text: &str) -> Option<Lang> {
        match text.trim() {
            "nb" | "no" => Some(Lang::Nb),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// The other language, for the switch.
    pub fn other(self) -> Lang {
        match self {
            Lang::Nb => Lang::En,
            Lang::En => Lang::Nb,
        }
    }

    /// The text of `{prefix}_{value}` (a vocabulary word: theme, category, mask…), or the
    /// value itself when the table has none.
    pub fn label(self, prefix: &str, value: &str) -> String {
        match self.t(&format!("{prefix}_{value}")) {
            "?" => value.to_string(),
            text => text.to_string(),
        }
    }

    /// A key's text in this language.
    pub fn t(self, key: &str) -> &'static str {
        static TABLE: OnceLock<HashMap<&'static str, (&'static str, &'static str)>> = OnceLock::new();
        let table = TABLE.get_or_init(|| STRINGS.iter().map(|(k, nb, en)| (*k, (*nb, *en))).collect());
        match table.get(key) {
            Some((nb, en)) => match self {
                Lang::Nb => nb,
                Lang::En => en,
            },
            None => "?",
        }
    }
}

/// (key, bokmål, English).
pub const STRINGS: &[(&str, &str, &str)] = &[
    ("language_name", "Norsk (bokmål)", "English"),
    ("switch_to", "English", "Norsk"),
    ("switch_label", "Switch to English", "Bytt til norsk"),
    ("skip", "Hopp til hovedinnholdet", "Skip to main content"),
    (
        "tagline",
        "Kommunens data på tvers av avdelinger, lovlig og åpent",
        "The municipality's data across departments, lawfully and openly",
    ),
    ("nav_main", "Hovedmeny", "Main menu"),
    ("nav_catalogue", "Datakatalog", "Data catalogue"),
    ("nav_open", "Ledige barnehageplasser", "Free kindergarten places"),
    ("nav_me", "Min side", "My page"),
    ("ways_on", "Veien videre", "Where to go next"),
    ("to_front", "Til forsiden", "To the front page"),
    ("nav_api", "API", "API"),
    ("log_in", "Logg inn", "Log in"),
    ("log_out", "Logg ut", "Log out"),
    ("logged_in_as", "Innlogget som", "Logged in as"),
    (
        "footer",
        "Tverr er åpen kildekode. Tilgang til personopplysninger krever formål og rettslig grunnlag, og blir logget.",
        "Tverr is open source. Access to personal data needs a purpose and a legal basis, and is logged.",
    ),
    // Vocabularies: EU data themes, column categories, subject keys, masks, frequencies.
    ("theme_AGRI", "Jordbruk, fiskeri, skogbruk og mat", "Agriculture, fisheries, forestry and food"),
    ("theme_ECON", "Økonomi og finans", "Economy and finance"),
    ("theme_EDUC", "Utdanning, kultur og sport", "Education, culture and sport"),
    ("theme_ENER", "Energi", "Energy"),
    ("theme_ENVI", "Miljø", "Environment"),
    ("theme_GOVE", "Forvaltning og offentlig sektor", "Government and public sector"),
    ("theme_HEAL", "Helse", "Health"),
    ("theme_INTR", "Internasjonale temaer", "International issues"),
    ("theme_JUST", "Justis, rettssystem og allmenn sikkerhet", "Justice, legal system and public safety"),
    ("theme_REGI", "Regioner og byer", "Regions and cities"),
    ("theme_SOCI", "Befolkning og samfunn", "Population and society"),
    ("theme_TECH", "Vitenskap og teknologi", "Science and technology"),
    ("theme_TRAN", "Transport", "Transport"),
    ("cat_none", "–", "–"),
    ("cat_person-id", "Personidentifikator", "Person identifier"),
    ("cat_personal", "Personopplysning", "Personal data"),
    ("cat_special-category", "Særlig kategori (GDPR art. 9)", "Special category (GDPR art. 9)"),
    ("cat_protected-address", "Adresse som kan være beskyttet", "Address that may be protected"),
    ("subj_person", "Person", "Person"),
    ("subj_property", "Eiendom", "Property"),
    ("subj_organization", "Virksomhet", "Organisation"),
    ("mask_redact", "Skjult", "Redacted"),
    ("mask_partial", "Delvis skjult", "Partly hidden"),
    ("mask_hmac", "Pseudonym (HMAC)", "Pseudonym (HMAC)"),
    ("mask_year-only", "Bare årstall", "Year only"),
    ("freq_continuous", "Løpende", "Continuously"),
    ("freq_daily", "Daglig", "Daily"),
    ("freq_weekly", "Ukentlig", "Weekly"),
    ("freq_monthly", "Månedlig", "Monthly"),
    ("freq_annual", "Årlig", "Yearly"),
    // Log-in
    ("login_title", "Logg inn", "Log in"),
    ("login_employee", "Ansatte", "Employees"),
    ("username", "Brukernavn", "User name"),
    ("password", "Passord", "Password"),
    ("login_failed", "Feil brukernavn eller passord.", "Wrong user name or password."),
    ("login_limited", "For mange forsøk. Vent litt og prøv igjen.", "Too many attempts. Wait a little and try again."),
    ("login_citizen", "Innbyggere", "Citizens"),
    (
        "login_citizen_demo",
        "Demo: logg inn som innbygger med fødselsnummer (i drift: ID-porten).",
        "Demo: log in as a citizen with a national identity number (in production: ID-porten).",
    ),
    ("fnr", "Fødselsnummer (11 siffer)", "National identity number (11 digits)"),
    ("login_citizen_bad", "Fødselsnummeret er ikke gyldig", "The national identity number is not valid"),
    ("login_oidc", "Logg inn med", "Log in with"),
    ("oidc_failed", "Innloggingen ble ikke fullført", "The log-in was not completed"),
    (
        "bad_form",
        "Skjemaet var utløpt eller ikke sendt fra denne siden. Prøv igjen.",
        "The form had expired or was not sent from this page. Try again.",
    ),
    // Catalogue
    ("catalogue_title", "Datakatalog", "Data catalogue"),
    (
        "catalogue_intro",
        "Finn datasett fra kommunen og de interkommunale selskapene. Åpne data kan alle se; andre data krever formål og avtale.",
        "Find datasets from the municipality and the inter-municipal companies. Open data is for everyone; other data needs a purpose and an agreement.",
    ),
    ("search", "Søk", "Search"),
    ("search_label", "Søk i datasett", "Search datasets"),
    ("filters", "Filtre", "Filters"),
    ("organisation", "Organisasjon", "Organisation"),
    ("department", "Avdeling", "Department"),
    ("theme", "Tema", "Theme"),
    ("classification", "Klassifisering", "Classification"),
    ("all", "Alle", "All"),
    ("found", "datasett funnet", "datasets found"),
    ("none_found", "Ingen datasett passer søket.", "No dataset matches the search."),
    ("open_data_promo", "Se ledige barnehageplasser i Hamar – uten innlogging", "See free kindergarten places in Hamar – no log-in needed"),
    ("class_open", "Åpen", "Open"),
    ("class_internal", "Intern", "Internal"),
    ("class_confidential", "Fortrolig", "Confidential"),
    ("class_strictly_confidential", "Strengt fortrolig", "Strictly confidential"),
    ("access_read", "Du kan lese data", "You can read the data"),
    ("access_metadata", "Bare beskrivelse (egen organisasjon)", "Description only (own organisation)"),
    // Dataset page
    ("about", "Om datasettet", "About the dataset"),
    ("owner", "Eier", "Owner"),
    ("licence", "Lisens", "Licence"),
    ("frequency", "Oppdateres", "Updated"),
    ("keywords", "Stikkord", "Keywords"),
    ("schema", "Kolonner", "Columns"),
    ("column", "Kolonne", "Column"),
    ("type", "Type", "Type"),
    ("category", "Kategori", "Category"),
    ("subject_key", "Nøkkel for", "Key of"),
    ("mask", "Maskering", "Mask"),
    ("preview", "Forhåndsvisning", "Preview"),
    ("preview_rows", "Første rader, slik du har lov å se dem", "First rows, as you may see them"),
    ("purpose", "Formål", "Purpose"),
    ("purpose_pick", "Velg formål for å se data", "Choose a purpose to see data"),
    (
        "purpose_needed",
        "Dette datasettet er ikke åpent. Velg formålet du behandler opplysningene for; tilgangen blir logget.",
        "This dataset is not open. Choose the purpose you process the data for; the access is logged.",
    ),
    ("show", "Vis", "Show"),
    ("login_to_see", "Logg inn for å se data fra dette datasettet.", "Log in to see data from this dataset."),
    ("denied", "Ingen tilgang", "No access"),
    ("versions", "Versjoner", "Versions"),
    ("version", "Versjon", "Version"),
    ("when", "Når", "When"),
    ("actor", "Av", "By"),
    ("rows", "Rader", "Rows"),
    ("operation", "Endring", "Change"),
    ("download", "Last ned", "Download"),
    (
        "download_intro",
        "Hele datasettet i valgt format (samme tilgang og logging som forhåndsvisningen).",
        "The whole dataset in the chosen format (the same access and logging as the preview).",
    ),
    ("api_examples", "Bruk fra API", "Use from the API"),
    ("map", "Kart", "Map"),
    (
        "map_alt",
        "Kartet viser {n} objekter fra datasettet i EPSG:25833. Tabellen over har de samme objektene som tekst.",
        "The map shows {n} objects from the dataset in EPSG:25833. The table above lists the same objects as text.",
    ),
    (
        "map_about_people",
        "Datasettet handler om personer. Kartet leser alle radene du har tilgang til, og hver person blir logget som sett. Vis det bare når du trenger det.",
        "The dataset is about people. The map reads every row you may see, and every person is logged as seen. Show it only when you need it.",
    ),
    ("map_show", "Vis kart", "Show map"),
    ("chart", "Tidsserie", "Time series"),
    (
        "chart_alt",
        "Månedlig gjennomsnitt av {v} for {s}, fra {from} til {to}: lavest {min}, høyest {max}.",
        "Monthly average of {v} for {s}, from {from} to {to}: lowest {min}, highest {max}.",
    ),
    ("not_found", "Fant ikke siden", "Page not found"),
    (
        "not_found_text",
        "Siden finnes ikke, eller du har ikke tilgang til den.",
        "The page does not exist, or you do not have access to it.",
    ),
    ("not_found_login", "Er du ansatt, kan du logge inn for å se mer.", "If you are an employee, log in to see more."),
    ("error", "Noe gikk galt", "Something went wrong"),
    ("foreign_title", "Du kom hit fra et annet nettsted", "You came here from another website"),
    (
        "foreign_text",
        "Siden ble åpnet av et annet nettsted. Tverr viser ikke data og gjør ingenting i ditt navn før du selv går videre herfra.",
        "Another website opened this page. Tverr shows no data and does nothing in your name until you go on from here yourself.",
    ),
    ("foreign_go", "Gå videre til siden", "Go on to the page"),
    // Open data
    ("kg_title", "Ledige barnehageplasser i Hamar", "Free kindergarten places in Hamar"),
    (
        "kg_intro",
        "Barnehager i Hamar kommune som har ledige plasser nå. Tallene kommer fra kommunens åpne datasett og oppdateres daglig.",
        "Kindergartens in Hamar municipality with free places now. The figures come from the municipality's open dataset and are updated daily.",
    ),
    ("age", "Barnets alder", "Child's age"),
    ("age_any", "Alle aldre", "Any age"),
    ("years", "år", "years"),
    ("district", "Bydel", "District"),
    ("district_any", "Alle bydeler", "All districts"),
    ("filter", "Filtrer", "Filter"),
    ("kindergarten", "Barnehage", "Kindergarten"),
    ("address", "Adresse", "Address"),
    ("ownership", "Eierform", "Ownership"),
    ("ages", "Alder", "Ages"),
    ("free_places", "Ledige plasser", "Free places"),
    ("capacity", "Kapasitet", "Capacity"),
    ("kg_count", "barnehager med ledige plasser", "kindergartens with free places"),
    ("kg_none", "Ingen barnehager med ledige plasser passer valgene.", "No kindergarten with free places matches the choices."),
    ("kg_source", "Kilde: datasettet «Barnehager i Hamar» (NLOD 2.0)", "Source: the dataset “Barnehager i Hamar” (NLOD 2.0)"),
    ("kg_api", "Samme data fra API-et", "The same data from the API"),
    // Min side
    ("me_title", "Min side", "My page"),
    (
        "me_intro",
        "Her ser du hva kommunen har registrert om deg, og hvem som har sett opplysningene dine, når og hvorfor.",
        "Here you see what the municipality holds about you, and who has seen your data, when and why.",
    ),
    (
        "me_only_citizens",
        "Min side er for innbyggere. Logg inn som innbygger for å se dine data.",
        "My page is for citizens. Log in as a citizen to see your data.",
    ),
    ("me_access", "Hvem har sett opplysningene mine", "Who has seen my data"),
    ("me_no_access", "Ingen har sett opplysningene dine ennå.", "Nobody has seen your data yet."),
    ("me_data", "Mine data", "My data"),
    ("me_no_data", "Vi fant ingen opplysninger om deg.", "We found no data about you."),
    ("me_download", "Last ned alt om meg (JSON)", "Download everything about me (JSON)"),
    ("me_who", "Hvem", "Who"),
    ("me_why", "Hvorfor", "Why"),
    ("me_law", "Lovgrunnlag", "Legal basis"),
    ("me_what", "Hva", "What"),
    ("me_how", "Kanal", "Channel"),
    ("me_bulk", "en samlet uttrekk der du kan ha vært med", "a bulk read you may have been part of"),
    ("me_employee", "ansatt", "employee"),
    ("me_self", "deg selv", "yourself"),
    ("me_guardian", "foresatt", "parent"),
    ("me_operator", "driftsoperatør (kommandolinje)", "operator (command line)"),
    ("me_system", "system", "system"),
    ("role_admin", "administrator", "administrator"),
    ("role_steward", "forvalter", "steward"),
    ("role_employee", "saksbehandler", "case worker"),
    ("role_auditor", "revisor", "auditor"),
    ("citizen_you", "innbygger", "citizen"),
    (
        "me_self_hidden",
        "Listen viser andres tilgang. Dine egne besøk på Min side er ikke med.",
        "The list shows others' access. Your own visits to My page are not included.",
    ),
    // Employees' pages
    ("nav_lookup", "Oppslag", "Look-up"),
    ("nav_byggesak", "Byggesak", "Building cases"),
    ("nav_health", "Helse og omsorg", "Health and care"),
    // Health and care (/helse, /min-side/helse)
    ("health_title", "Helse og omsorg i Hamar", "Health and care in Hamar"),
    (
        "health_intro",
        "Kommunens helse- og omsorgstjenester: hva de gjør, hvem som kan få dem, når de er åpne, hvor de er og hvor lenge du må vente. Under finner du også fastlegene som har ledige plasser.",
        "The municipality's health and care services: what they do, who can get them, when they are open, where they are and how long you have to wait. Below you also find the GPs with free places on their lists.",
    ),
    (
        "health_emergency",
        "Ring 113 ved livstruende sykdom eller skade. Ring legevakten på 116 117 når fastlegen er stengt.",
        "Call 113 in a life-threatening emergency. Call the out-of-hours service on 116 117 when your GP is closed.",
    ),
    ("health_search", "Søk i tjenestene", "Search the services"),
    (
        "health_search_help",
        "For eksempel helsestasjon, hjemmesykepleie eller tannlege.",
        "For example helsestasjon (health centre), hjemmesykepleie (home nursing) or tannhelse (dental care).",
    ),
    ("health_free_only", "Bare fastleger med ledige plasser", "Only GPs with free places"),
    ("health_services", "Tjenester", "Services"),
    ("health_count", "tjenester", "services"),
    ("health_none", "Ingen tjenester passer søket.", "No services match the search."),
    ("health_who", "Hvem kan få tjenesten", "Who can get it"),
    ("health_hours", "Åpningstider", "Opening hours"),
    ("health_phone", "Telefon", "Phone"),
    ("health_waiting", "Ventetid nå", "Waiting time now"),
    ("health_waiting_days", "om lag {n} dager", "about {n} days"),
    ("health_no_waiting", "Ingen venteliste", "No waiting list"),
    ("health_map_alt", "Kart over Hamar med {n} helse- og omsorgstjenester", "Map of Hamar with {n} health and care services"),
    ("health_doctors", "Fastleger", "GPs (fastleger)"),
    (
        "health_doctors_intro",
        "Fastlegene i kommunen, de med ledige plasser på listen først. Du bytter fastlege på helsenorge.no.",
        "The GPs in the municipality, those with free places on their lists first. You change GP on helsenorge.no.",
    ),
    ("health_doctors_none", "Ingen fastleger passer søket.", "No GPs match the search."),
    ("health_doctor", "Lege", "Doctor"),
    ("health_office", "Legekontor", "Medical centre"),
    ("health_list", "Pasienter på listen", "Patients on the list"),
    ("health_sources", "Kilder", "Sources"),
    ("health_mine", "Mine helsetjenester (Min side)", "My health services (My page)"),
    ("me_health_title", "Mine helse- og omsorgstjenester", "My health and care services"),
    (
        "me_health_intro",
        "Helse- og omsorgstjenestene kommunen har registrert om deg og barna dine under 16 år, hvem som har ansvaret, lovgrunnlaget, og hvem i kommunen som har lest opplysningene.",
        "The health and care services the municipality has registered about you and your children under 16, who is responsible, the legal basis, and who in the municipality has read the information.",
    ),
    ("me_health_held", "Tjenester og timer", "Services and appointments"),
    (
        "me_health_none",
        "Kommunen har ingen helse- eller omsorgstjenester registrert om deg eller barna dine.",
        "The municipality has no health or care services registered about you or your children.",
    ),
    ("me_health_department", "Ansvarlig", "Responsible"),
    ("me_health_reads", "Hvem har lest helseopplysningene", "Who has read the health information"),
    (
        "me_health_reads_intro",
        "Alle som har lest helseopplysninger om deg eller barna dine, med navn, slik pasientjournalloven § 18 krever. Dine egne besøk her er ikke med.",
        "Everyone who has read health information about you or your children, by name, as the Patient Records Act § 18 requires. Your own visits here are not included.",
    ),
    (
        "me_health_reads_none",
        "Ingen i kommunen har lest helseopplysninger om deg eller barna dine.",
        "No one in the municipality has read health information about you or your children.",
    ),
    ("me_health_whose", "Om hvem", "About whom"),
    ("me_you", "Deg", "You"),
    ("me_child", "{name} ({age} år)", "{name} (aged {age})"),
    ("me_back", "Tilbake til Min side", "Back to My page"),
    // A parent's kindergarten page (/min-side/barnehage) and the admission (/barnehageopptak)
    ("kgm_title", "Barnehage for barna mine", "Kindergarten for my children"),
    (
        "kgm_intro",
        "For hvert barn i barnehagealder: plassen, søknadene og status, tilbud som venter på svar, og hva plassen koster med redusert foreldrebetaling og søskenmoderasjon.",
        "For each child of kindergarten age: the place, the applications and their status, offers waiting for an answer, and what the place costs with reduced parental payment and sibling reduction.",
    ),
    (
        "kgm_none",
        "Du har ingen barn i barnehagealder registrert i Folkeregisteret.",
        "You have no children of kindergarten age registered in the population register.",
    ),
    ("kgm_place", "Plass", "Place"),
    ("kgm_start", "Oppstart", "Start"),
    ("kgm_hours", "Timer per uke", "Hours per week"),
    ("kgm_price", "Pris", "Price"),
    ("kgm_per_month", "{kr} per måned", "{kr} per month"),
    (
        "kgm_why_maximum",
        "Maksimalprisen er {max} per måned for heltidsplass; plassen er {share} % av heltid.",
        "The maximum price is {max} a month for a full-time place; the place is {share} % of full time.",
    ),
    (
        "kgm_why_income",
        "Husholdningens inntekt er {income}. Ingen betaler mer enn 6 % av inntekten, her {cap} per måned.",
        "The household's income is {income}. No one pays more than 6 % of their income, here {cap} a month.",
    ),
    (
        "kgm_why_no_income",
        "Kommunen har ikke inntekten deres. Har husholdningen lav inntekt, kan dere søke om redusert foreldrebetaling.",
        "The municipality does not have your income. If the household has a low income, you can apply for reduced parental payment.",
    ),
    ("kgm_why_sibling", "Søskenmoderasjon for barn nummer {n}: {pct} %.", "Sibling reduction for child number {n}: {pct} %."),
    ("kgm_no_place", "Barnet har ikke barnehageplass.", "The child does not have a kindergarten place."),
    ("kgm_applications", "Søknader", "Applications"),
    ("kgm_no_applications", "Ingen søknader.", "No applications."),
    ("kgm_application", "Søknad", "Application"),
    ("kgm_wished", "Ønsket barnehage", "Kindergarten wished for"),
    ("kgm_status", "Status", "Status"),
    ("kgm_offered", "Tilbudt plass", "Place offered"),
    ("kgm_deadline", "Svarfrist", "Reply by"),
    (
        "kgm_offer",
        "Tilbud om plass i {kg} fra {start}. Svar innen {deadline}.",
        "Offer of a place at {kg} from {start}. Reply by {deadline}.",
    ),
    (
        "kgm_rules",
        "Prisene følger forskrift om foreldrebetaling fra {from}: maksimalpris {max} kr per måned, høyst {pct} % av husholdningens inntekt over {months} måneder, søskenmoderasjon {second} % for barn nummer to og {third} % fra barn nummer tre.",
        "Prices follow the regulations on parental payment from {from}: a maximum of NOK {max} a month, at most {pct} % of the household's income over {months} months, and a sibling reduction of {second} % for the second child and {third} % from the third.",
    ),
    ("kg_apply", "Søk plass eller se søknaden din", "Apply for a place or see your application"),
    (
        "kg_apply_help",
        "På Min side ser du søknaden, tilbud om plass og hva plassen koster for barna dine. Selve søknaden sender du i kommunens opptakssystem.",
        "On My page you see the application, offers of a place and what the place costs for your children. The application itself is sent in the municipality's admission system.",
    ),
    ("kg_kind", "Type barnehage", "Kind of kindergarten"),
    ("kg_kind_any", "Alle typer", "All kinds"),
    ("kg_opens", "Åpner senest", "Opens at the latest"),
    ("kg_closes", "Stenger tidligst", "Closes at the earliest"),
    ("kg_any_time", "Uansett", "Any time"),
    ("kg_hours", "Åpningstid", "Opening hours"),
    ("kg_from", "Avstand fra adresse", "Distance from address"),
    (
        "kg_from_help",
        "Skriv gateadressen din, for eksempel Storgata 12. Avstanden måles i luftlinje fra midten av gaten.",
        "Enter your street address, for example Storgata 12. The distance is measured in a straight line from the middle of the street.",
    ),
    ("kg_from_street", "Avstand i luftlinje fra midten av", "Distance in a straight line from the middle of"),
    ("kg_address_unknown", "Fant ingen gate i kommunen som passer «{a}».", "Found no street in the municipality that matches “{a}”."),
    ("kg_distance", "Avstand", "Distance"),
    ("adm_title", "Barnehageopptak", "Kindergarten admission"),
    (
        "adm_intro",
        "Søkerne per barnehage og aldersgruppe på opptaksdagen, med ledige plasser. Du leser for formålet barnehageopptak, og visningen blir logget.",
        "The applicants per kindergarten and age group on the admission day, with the places free. You read for the purpose barnehageopptak (kindergarten admission), and the view is logged.",
    ),
    ("adm_go", "Vis søkere og ledige plasser", "Show applicants and free places"),
    (
        "adm_no_purpose",
        "Du har ikke tilgang for formålet barnehageopptak.",
        "You have no access for the purpose barnehageopptak (kindergarten admission).",
    ),
    ("adm_overview", "Søkere og ledige plasser", "Applicants and free places"),
    ("adm_applicants", "Søkere", "Applicants"),
    ("adm_group", "Aldersgruppe {g} år", "Age group {g}"),
    ("adm_born", "Født", "Born"),
    // The property service (/byggesak)
    ("bs_title", "Byggesak: eiendom, planer og naboer", "Building case: property, plans and neighbours"),
    (
        "bs_intro",
        "Se alt du har lov å se om en eiendom i én visning: opplysninger fra alle avdelinger, reguleringsplanene som gjelder og naboene som skal varsles. Du leser for formålet byggesaksbehandling, og alt du ser blir logget.",
        "See everything you may see about a property in one view: what every department holds, the zoning plans that apply and the neighbours to notify. You read for the purpose byggesaksbehandling (building case processing), and everything you see is logged.",
    ),
    (
        "bs_intro_citizen",
        "Her ser du eiendommene du eier, reguleringsplanene som gjelder for dem og byggesakene dine. Opplysninger om naboene vises ikke.",
        "Here you see the properties you own, the zoning plans that apply to them and your building cases. Nothing about the neighbours is shown.",
    ),
    ("bs_q", "Matrikkelnummer eller adresse", "Cadastral unit or address"),
    ("bs_q_help", "For eksempel 3403-12/345, 12/345 eller Storgata 12.", "For example 3403-12/345, 12/345 or Storgata 12."),
    ("bs_distance", "Avstand for naboliste", "Distance for the neighbour list"),
    ("bs_border", "Felles grense", "Shared border"),
    ("bs_go", "Vis eiendom", "Show property"),
    ("bs_matches", "Eiendommer med denne adressen", "Properties at this address"),
    ("bs_matches_none", "Fant ingen eiendom du har lov å se med denne adressen.", "Found no property you may see at this address."),
    ("bs_own", "Dine eiendommer", "Your properties"),
    (
        "bs_own_none",
        "Du står ikke som eier av noen eiendom i kommunen.",
        "You are not registered as the owner of any property in the municipality.",
    ),
    ("bs_none", "Fant ingen eiendom du har lov å se med dette nummeret.", "Found no property you may see with this number."),
    (
        "bs_invalid",
        "Skriv et gyldig matrikkelnummer (for eksempel 3403-12/345) eller minst to bokstaver av en adresse.",
        "Enter a valid cadastral unit (for example 3403-12/345) or at least two letters of an address.",
    ),
    (
        "bs_no_purpose",
        "Du har ikke tilgang for formålet byggesaksbehandling. Spør forvalteren i avdelingen din.",
        "You have no access for the purpose byggesaksbehandling (building case processing). Ask your department's steward.",
    ),
    ("bs_not_allowed", "Du har ikke lov å se dette.", "You may not see this."),
    ("bs_property", "Eiendom", "Property"),
    ("bs_area", "Areal", "Area"),
    ("bs_owner", "Eier", "Owner"),
    ("bs_owner_org", "Eier (organisasjonsnummer)", "Owner (organisation number)"),
    ("bs_tax_value", "Eiendomsskattetakst", "Property tax valuation"),
    ("bs_zoning", "Reguleringsplaner som gjelder", "Zoning plans that apply"),
    (
        "bs_zoning_intro",
        "Planer der planområdet overlapper tomten, med hvor stor del av tomten hver plan dekker.",
        "Plans whose plan area overlaps the parcel, with how much of the parcel each plan covers.",
    ),
    ("bs_zoning_none", "Ingen reguleringsplan dekker tomten.", "No zoning plan covers the parcel."),
    ("bs_plan", "Reguleringsplan:", "Zoning plan:"),
    ("bs_plan_id", "Plan-ID", "Plan ID"),
    ("bs_plan_name", "Plannavn", "Plan name"),
    ("bs_plan_status", "Status", "Status"),
    ("bs_plan_decided", "Vedtatt", "Adopted"),
    ("bs_share", "Andel av tomten", "Share of the parcel"),
    ("bs_covered", "Dekket areal", "Area covered"),
    (
        "bs_map_alt",
        "Kart over eiendom {id} med {plans} reguleringsplaner og {neighbours} naboeiendommer",
        "Map of property {id} with {plans} zoning plans and {neighbours} neighbouring properties",
    ),
    ("bs_legend_parcel", "Eiendommen", "The property"),
    ("bs_legend_plan", "Planområde", "Plan area"),
    ("bs_legend_neighbour", "Naboeiendom", "Neighbouring property"),
    ("bs_neighbour", "Naboeiendom:", "Neighbouring property:"),
    ("bs_neighbours", "Naboer som skal varsles", "Neighbours to notify"),
    (
        "bs_neighbours_intro",
        "Eiendommer som grenser til tomten eller ligger innenfor avstanden du valgte, med eierne du har lov å se (plan- og bygningsloven § 21-3).",
        "Properties that border the parcel or lie within the distance you chose, with the owners you may see (Planning and Building Act § 21-3).",
    ),
    (
        "bs_protected",
        "Eiere med adressebeskyttelse (fortrolig eller strengt fortrolig) står aldri i listen, og listen viser ikke om noen mangler. Send derfor alltid nabovarselet også til Folkeregisteret (Skatteetaten), som sender det videre til beskyttede eiere innenfor samme avstand.",
        "Owners with a protected address (fortrolig or strengt fortrolig) are never listed, and the list does not show whether any are missing. So always send the neighbour notice to the National Population Register (Skatteetaten) as well, which forwards it to protected owners within the same distance.",
    ),
    (
        "bs_neighbours_none",
        "Ingen naboeiendommer du har lov å se innenfor avstanden.",
        "No neighbouring properties you may see within the distance.",
    ),
    (
        "bs_truncated",
        "Listen viser de første {shown} av de {found} eiendommene innenfor avstanden, etter matrikkelnummer. Velg en kortere avstand for å få med alle.",
        "The list shows the first {shown} of the {found} properties within the distance, by cadastral number. Choose a shorter distance to list them all.",
    ),
    (
        "bs_truncated_download",
        "Nabolisten er for lang til å lastes ned: {found} eiendommer ligger innenfor avstanden, og listen tar med høyst {shown}. Velg en kortere avstand.",
        "The neighbour list is too long to download: {found} properties lie within the distance, and the list holds at most {shown}. Choose a shorter distance.",
    ),
    ("bs_wrong_distance", "Velg en av avstandene i listen.", "Choose one of the distances in the list."),
    ("bs_wrong_format", "Velg CSV eller utskriftsvennlig liste.", "Choose CSV or the printable list."),
    ("bs_matrikkel", "Matrikkel", "Cadastral unit"),
    ("bs_csv", "Last ned naboliste (CSV)", "Download neighbour list (CSV)"),
    ("bs_print", "Utskriftsvennlig naboliste", "Printable neighbour list"),
    ("bs_print_title", "Naboliste for nabovarsel", "Neighbour list for the neighbour notice"),
    ("bs_printed", "Hentet", "Retrieved"),
    ("bs_back", "Tilbake til eiendommen", "Back to the property"),
    ("bs_sources", "Opplysninger fra avdelingene", "What the departments hold"),
    (
        "bs_sources_intro",
        "Alle opplysningene om eiendommen du har lov å se, med hvor de kommer fra og grunnlaget for at du ser dem.",
        "Everything about the property you may see, with where it comes from and why you may see it.",
    ),
    ("nav_agreements", "Avtaler", "Agreements"),
    ("nav_audit", "Revisjon", "Audit"),
    ("nav_upload", "Last opp", "Upload"),
    (
        "employees_only",
        "Denne siden er for ansatte. Logg inn med din ansattbruker.",
        "This page is for employees. Log in with your employee account.",
    ),
    ("agreements_title", "Avtaler om deling", "Data-sharing agreements"),
    (
        "agreements_intro",
        "Avtaler gir en avdeling tilgang til en annen avdelings data for et formål med rettslig grunnlag. Den som eier dataene godkjenner.",
        "Agreements give one department access to another department's data for a purpose with a legal basis. The owner of the data approves.",
    ),
    ("agreement_saved", "Lagret: avtale nr.", "Saved: agreement no."),
    ("agreement_no", "Nr.", "No."),
    ("provider", "Gir data", "Provider"),
    ("consumer", "Får data (organisasjon/avdeling)", "Receives data (organisation/department)"),
    (
        "consumer_help",
        "For eksempel hamar/byggesak. Din egen avdeling er fylt inn.",
        "For example hamar/byggesak. Your own department is filled in.",
    ),
    ("datasets", "Datasett", "Datasets"),
    ("dataset", "Datasett", "Dataset"),
    (
        "dataset_help",
        "Som organisasjon/datasett, for eksempel hamar/barnehageplasser.",
        "As organisation/dataset, for example hamar/barnehageplasser.",
    ),
    ("columns_wanted", "Kolonner (tomt: alle unntatt særlige kategorier)", "Columns (empty: all except special categories)"),
    ("columns_help", "Skill kolonnenavn med komma.", "Separate column names with commas."),
    ("masks", "Maskering", "Masks"),
    (
        "masks_help",
        "For eksempel fodselsnummer=hmac, adresse=redact. Masker: redact, partial, hmac, year-only.",
        "For example fodselsnummer=hmac, adresse=redact. Masks: redact, partial, hmac, year-only.",
    ),
    ("basis_of_purpose", "Formålets eget grunnlag", "The purpose's own basis"),
    ("valid_from", "Gyldig fra", "Valid from"),
    ("valid_to", "Gyldig til (tomt: til den trekkes)", "Valid to (empty: until revoked)"),
    ("period", "Periode", "Period"),
    ("state", "Status", "State"),
    ("actions", "Handlinger", "Actions"),
    ("note", "Merknad", "Note"),
    ("approve", "Godkjenn", "Approve"),
    ("deny", "Avslå", "Deny"),
    ("revoke", "Trekk tilbake", "Revoke"),
    ("state_requested", "Til behandling", "Requested"),
    ("state_approved", "Godkjent", "Approved"),
    ("state_denied", "Avslått", "Denied"),
    ("state_revoked", "Trukket tilbake", "Revoked"),
    ("state_expired", "Utløpt", "Expired"),
    ("inbox", "Til behandling hos deg", "Waiting for you"),
    ("inbox_empty", "Ingen forespørsler venter på deg.", "No requests are waiting for you."),
    ("requested", "Forespørsler under behandling", "Pending requests"),
    ("active", "Aktive avtaler", "Active agreements"),
    ("expired", "Utløpte avtaler", "Expired agreements"),
    ("ended", "Avslåtte og tilbaketrukne", "Denied and revoked"),
    ("none", "Ingen.", "None."),
    ("request_new", "Be om tilgang", "Request access"),
    (
        "request_by_steward",
        "Forvalteren (steward) i avdelingen din ber om tilgang på vegne av avdelingen.",
        "Your department's steward requests access on the department's behalf.",
    ),
    ("request_send", "Send forespørsel", "Send request"),
    ("lookup_title", "Oppslag", "Look-up"),
    (
        "lookup_intro",
        "Finn alt du har lov å se om en person, en eiendom eller en virksomhet, fra alle avdelinger, for formålet du velger. Oppslaget blir logget, og personen kan se det på Min side.",
        "Find everything you may see about a person, a property or an organisation, from every department, for the purpose you choose. The look-up is logged, and the person can see it on My page.",
    ),
    ("lookup_kind", "Hva slår du opp?", "What are you looking up?"),
    ("lookup_id", "Fødselsnummer, matrikkel eller organisasjonsnummer", "National identity number, cadastral unit or organisation number"),
    ("lookup_id_help", "For eksempel 3403-12/345 for en eiendom i Hamar.", "For example 3403-12/345 for a property in Hamar."),
    ("lookup_go", "Slå opp", "Look up"),
    ("lookup_none", "Fant ingenting du har lov å se for dette formålet.", "Found nothing you may see for this purpose."),
    (
        "lookup_found",
        "Dette har du lov å se, gruppert etter hvor det kommer fra:",
        "This is what you may see, grouped by where it comes from:",
    ),
    ("related", "Knyttet til", "Related"),
    ("basis_open", "Åpne data", "Open data"),
    ("basis_own", "Egen avdeling", "Own department"),
    ("basis_agreement", "Avtale nr.", "Agreement no."),
    ("audit_title", "Tilgangslogg for revisjon", "Access log for audit"),
    (
        "audit_intro",
        "Søk i tilgangsloggen for din organisasjon og kontroller at loggen ikke er endret. Søkene dine blir også logget.",
        "Search the access log of your organisation and check that the log has not been changed. Your searches are logged too.",
    ),
    ("auditors_only", "Tilgangsloggen er bare for revisorer.", "The access log is for auditors only."),
    ("verify_chain", "Kontroller kjeden", "Verify the chain"),
    (
        "verify_ok",
        "Kjeden er hel: {n} oppføringer og {c} signerte kontrollpunkter er kontrollert.",
        "The chain is intact: {n} entries and {c} signed checkpoints checked.",
    ),
    ("verify_bad", "Kjeden er brutt:", "The chain is broken:"),
    ("from", "Fra dato", "From date"),
    ("to", "Til dato", "To date"),
    ("entries_found", "oppføringer (de nyeste 500)", "entries (the newest 500)"),
    ("entry_kind", "Type", "Kind"),
    ("upload_title", "Last opp data", "Upload data"),
    (
        "upload_intro",
        "Velg en fil (CSV, Excel, JSON, GeoJSON eller Parquet). Tverr finner format, tegnsett, skilletegn og kolonner, og viser dem før noe lagres.",
        "Choose a file (CSV, Excel, JSON, GeoJSON or Parquet). Tverr finds the format, encoding, delimiter and columns, and shows them before anything is stored.",
    ),
    ("stewards_only", "Bare forvaltere av en avdeling kan laste opp data.", "Only the stewards of a department can upload data."),
    ("upload_file", "Fil", "File"),
    ("upload_file_help", "Største fil:", "Largest file:"),
    ("upload_no_file", "Velg en fil som ikke er tom.", "Choose a file that is not empty."),
    ("upload_new", "Nytt datasett", "New dataset"),
    ("upload_mode", "Ny versjon", "New version"),
    ("mode_append", "Legg til rader", "Append rows"),
    ("mode_replace", "Erstatt alt", "Replace everything"),
    ("mode_upsert", "Oppdater etter nøkkel", "Update by key"),
    ("upload_key", "Nøkkelkolonne (ved oppdatering etter nøkkel)", "Key column (when updating by key)"),
    ("upload_subjects", "Nøkkelkolonner for personer, eiendommer og virksomheter", "Key columns of persons, properties and organisations"),
    (
        "upload_subjects_help",
        "For eksempel fodselsnummer=person, matrikkel=property.",
        "For example fodselsnummer=person, matrikkel=property.",
    ),
    ("upload_new_fields", "Bare for nytt datasett", "For a new dataset only"),
    ("upload_slug", "Navn i adressen", "Name in the address"),
    (
        "upload_slug_help",
        "Små bokstaver, tall og bindestrek, for eksempel kull-2026.",
        "Lower-case letters, digits and hyphens, for example kull-2026.",
    ),
    ("upload_dataset_title", "Tittel", "Title"),
    ("upload_description", "Beskrivelse", "Description"),
    ("upload_check", "Kontroller filen", "Check the file"),
    ("upload_refused", "Filen ble ikke lagret. Dette må rettes:", "The file was not stored. Fix this:"),
    ("upload_check_title", "Kontroller før lagring", "Check before storing"),
    ("upload_check_intro", "Slik leste Tverr filen. Ingenting er lagret ennå.", "This is how Tverr read the file. Nothing is stored yet."),
    ("format", "Format", "Format"),
    ("encoding", "Tegnsett", "Encoding"),
    ("delimiter", "Skilletegn", "Delimiter"),
    ("sheet", "Ark", "Sheet"),
    ("upload_added", "Nye kolonner", "New columns"),
    ("upload_confirm", "Lagre som ny versjon", "Store as a new version"),
    ("upload_cancel", "Avbryt", "Cancel"),
    ("upload_job_title", "Lagrer", "Storing"),
    ("upload_stored_title", "Lagret", "Stored"),
    ("upload_failed_title", "Ikke lagret", "Not stored"),
    ("bytes", "byte", "bytes"),
    ("upload_progress", "Lest av filen", "Read of the file"),
    ("upload_done", "Lagret som versjon", "Stored as version"),
    ("rows_lower", "rader", "rows"),
    (
        "rows_withheld",
        "Antallet vises bare for dem som ser alle radene, også personer med adressesperre",
        "The count is shown only to those who see every row, including people with protected addresses",
    ),
    ("upload_see", "Se datasettet", "See the dataset"),
    ("upload_again", "Prøv igjen med en rettet fil", "Try again with a corrected file"),
    // API page
    ("api_title", "API", "API"),
    (
        "api_intro",
        "Alt på disse sidene finnes også i API-et. Send et API-token i Authorization-headeren og formålet i Tverr-Purpose.",
        "Everything on these pages is also in the API. Send an API token in the Authorization header and the purpose in Tverr-Purpose.",
    ),
    ("api_document", "OpenAPI-dokumentet (JSON)", "The OpenAPI document (JSON)"),
    ("parameters", "Parametere", "Parameters"),
    ("responses", "Svar", "Responses"),
    ("required", "påkrevd", "required"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_every_key_used_by_a_template_or_page_exists() {
        let mut seen = std::collections::HashSet::new();
        for (k, nb, en) in STRINGS {
            assert!(seen.insert(*k), "{k} is in STRINGS twice");
            assert!(!nb.is_empty() && !en.is_empty(), "{k} lacks a text");
        }
        let dir = |d: &str| std::fs::read_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(d)).expect("readable");
        let mut used = 0;
        for entry in dir("templates").chain(dir("src/web")) {
            let path = entry.expect("entry").path();
            if path.ends_with("i18n.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("text");
            for (i, _) in text.match_indices(".t(\"") {
                let rest = &text[i + 4..];
                let key = &rest[..rest.find('"').expect("closing quote")];
                assert!(seen.contains(key), "{}: key {key:?} has no text", path.display());
                used += 1;
            }
        }
        assert!(used > 50, "found only {used} uses; is the pattern right?");
    }

    #[test]
    fn a_missing_key_shows_as_a_question_mark_not_a_panic() {
        assert_eq!(Lang::En.t("no-such-key"), "?");
        assert_eq!(Lang::Nb.t("log_in"), "Logg inn");
        assert_eq!(Lang::En.t("log_in"), "Log in");
    }
}
