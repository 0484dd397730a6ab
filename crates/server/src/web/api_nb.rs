//! The API document's texts in bokmål, keyed by the English text of the OpenAPI document (`TAG:` keys are tag names). The English page shows the document as it is; a test fails when a text of the document has no entry here.

/// (English, bokmål).
pub(super) const API_NB: &[(&str, &str)] = &[
    (
        "COL=TEXT: the column's description, the title people read",
        "KOLONNE=TEKST: kolonnens beskrivelse, tittelen folk leser over verdiene",
    ),
    (
        "A JSON page, or the whole result as a file (Content-Disposition names it)",
        "En JSON-side, eller hele resultatet som fil (filnavnet står i Content-Disposition)",
    ),
    ("A SQL condition over the columns you may read", "En SQL-betingelse på kolonnene du har lov å lese"),
    (
        "A dataset's metadata, with the columns the caller may see and their masks. Reading it needs\nwhat reading the data needs (a purpose for non-open datasets).",
        "Metadata for et datasett, med kolonnene du har lov å se og hvordan de er maskert. Krever det samme som å lese dataene (et formål for datasett som ikke er åpne).",
    ),
    (
        "A purpose registered by the data's organisation, e.g. `byggesaksbehandling`. Needed for\nevery dataset that is not open.",
        "Et formål som virksomheten som eier dataene, har registrert, f.eks. `byggesaksbehandling`. Kreves for alle datasett som ikke er åpne.",
    ),
    ("A token valid one day", "En API-nøkkel som gjelder i ett døgn"),
    ("Agreements the caller's organisation is a party to", "Avtaler virksomheten din er part i"),
    ("Agreements the caller's organisation is a party to.", "Avtaler virksomheten din er part i."),
    (
        "An RFC 9457 problem: 400 invalid input, 401 not authenticated, 403 not allowed or purpose missing, 404 not found (or not yours to see), 405, 409, 413 too large, 415, 422 a file that cannot be read, 429 too many queries or failed log-ins, 503 access log unavailable, 504 query timed out",
        "Et problemsvar etter RFC 9457: 400 ugyldige inndata, 401 ikke autentisert, 403 ingen tilgang eller formål mangler, 404 finnes ikke (eller du har ikke tilgang), 405, 409, 413 for stor, 415, 422 en fil som ikke kan leses, 429 for mange spørringer eller mislykkede innlogginger, 503 tilgangsloggen er utilgjengelig, 504 spørringen tok for lang tid",
    ),
    ("As a file (Content-Disposition)", "Som fil (Content-Disposition)"),
    ("Before this time (RFC 3339 or a date), exclusive.", "Før dette tidspunktet (RFC 3339 eller en dato), ikke medregnet."),
    ("COL=boolean|integer|float|date|timestamp|text", "KOLONNE=boolean|integer|float|date|timestamp|text"),
    (
        "COL=none|person-id|personal|special-category|protected-address",
        "KOLONNE=none|person-id|personal|special-category|protected-address",
    ),
    ("COL=person|property|organization", "KOLONNE=person|property|organization"),
    (
        "CRS of bbox: EPSG:4326 (default), EPSG:25832 or EPSG:25833",
        "Koordinatsystemet for `bbox`: EPSG:4326 (standard), EPSG:25832 eller EPSG:25833",
    ),
    (
        "CRS of the near point: EPSG:4326 (default), EPSG:25832 or EPSG:25833",
        "Koordinatsystemet for punktet i `near`: EPSG:4326 (standard), EPSG:25832 eller EPSG:25833",
    ),
    ("CSV: , ; | or tab", "CSV: , ; | eller tabulator"),
    ("CSV: , or .", "CSV: , eller ."),
    ("CSV: start with a UTF-8 byte-order mark (Excel)", "CSV: start filen med en UTF-8-BOM (for Excel)"),
    (
        "CSV: write text cells as they are; by default a cell that starts with =, +, -, @, tab or carriage return gets a leading ' so spreadsheets do not run it as a formula",
        "CSV: skriv tekstceller uendret; som standard får en celle som begynner med =, +, -, @, tabulator eller vognretur, en ' foran, slik at regneark ikke kjører den som en formel",
    ),
    ("Checks the chain and every checkpoint.", "Kontrollerer kjeden og alle kontrollpunktene."),
    ("Checks the password and issues a token.", "Kontrollerer passordet og utsteder en API-nøkkel."),
    ("Classification", "Klassifisering"),
    ("Columns, comma-separated", "Kolonner, kommaseparert"),
    (
        "Columns, comma-separated; `-col` or `col desc` for descending",
        "Kolonner, kommaseparert; `-col` eller `col desc` for synkende rekkefølge",
    ),
    ("Created as version 0", "Opprettet som versjon 0"),
    ("Declared purpose (or the Tverr-Purpose header)", "Oppgitt formål (eller hodefeltet Tverr-Purpose)"),
    ("EU data theme", "EU-datatema"),
    ("Entries about the auditor's organisation", "Loggoppføringer om revisorens virksomhet"),
    ("Entries about the auditor's organisation that match the filters.", "Loggoppføringer om revisorens virksomhet som passer filtrene."),
    (
        "Every access that released data about the calling citizen, newest first.",
        "Alle tilganger som utleverte opplysninger om den innloggede innbyggeren, nyeste først.",
    ),
    ("Every access to my data, newest first", "Alle tilganger til opplysningene mine, nyeste først"),
    ("Every version, oldest first", "Alle versjoner, eldste først"),
    ("Everything Tverr holds about me (GDPR art. 15)", "Alt Tverr har om meg (GDPR art. 15)"),
    ("Everything Tverr holds about the calling citizen.", "Alt Tverr har om den innloggede innbyggeren."),
    (
        "Everything about a person (fødselsnummer, D-, H- or synthetic number).",
        "Alt om en person (fødselsnummer, D-nummer, H-nummer eller syntetisk nummer).",
    ),
    ("Everything about a property (matrikkel unit).", "Alt om en eiendom (matrikkelenhet)."),
    ("Everything about an organisation (organisasjonsnummer).", "Alt om en virksomhet (organisasjonsnummer)."),
    ("From a page's `next` link: the next page of the same version", "Fra `next`-lenken på en side: neste side av samme versjon"),
    ("From this time (RFC 3339 or a date), inclusive.", "Fra og med dette tidspunktet (RFC 3339 eller en dato)."),
    ("Fødselsnummer; spaces and dashes are ignored", "Fødselsnummer; mellomrom og bindestreker ignoreres"),
    ("Matching datasets, best match first", "Datasett som passer, beste treff først"),
    ("Matching properties, by address", "Eiendommer som passer, etter adresse"),
    (
        "Matrikkel unit: 3403-12/345 (or 12/345 in the caller's kommune); append /neighbours for the neighbour list",
        "Matrikkelenhet: 3403-12/345 (eller 12/345 i din kommune); legg til `/neighbours` for nabolisten",
    ),
    (
        "Matrikkel unit: 3403-12/345, 3403-12/345/0/2, or 12/345 in the caller's kommune; historical kommunenummer (0403) are mapped",
        "Matrikkelenhet: 3403-12/345, 3403-12/345/0/2 eller 12/345 i din kommune; historiske kommunenummer (0403) regnes om til dagens",
    ),
    ("Metadata, the columns as the caller sees them, and versions", "Metadata, kolonnene slik du ser dem, og versjoner"),
    (
        "My and my children's health and care services, and who in the municipality has read them",
        "Mine og barnas helse- og omsorgstjenester, og hvem i kommunen som har lest dem",
    ),
    (
        "My children under 16 (none with a protected address), youngest first",
        "Barna mine under 16 år (ingen med adressebeskyttelse), yngste først",
    ),
    (
        "My children under 16, as the register of parental responsibility names them.",
        "Barna mine under 16 år, slik de er oppført i registeret over foreldreansvar.",
    ),
    ("My children's kindergarten places, applications, offers and prices.", "Barnehageplasser, søknader, tilbud og priser for barna mine."),
    (
        "My health and care services, my children's, and who has read them.",
        "Mine og barnas helse- og omsorgstjenester, og hvem som har lest dem.",
    ),
    ("Neighbours only: json (default) or csv", "Bare for naboer: json (standard) eller csv"),
    (
        "Neighbours only: the distance in metres, 0 to 500 (default 50; 0 = sharing a border)",
        "Bare for naboer: avstanden i meter, 0 til 500 (standard 50; 0 = felles grense)",
    ),
    ("No property the caller may see has this number", "Ingen eiendom du har lov å se, har dette nummeret"),
    ("One agreement with its history.", "Én avtale med historikk."),
    (
        "One property, or (with the path ending in `/neighbours`) its neighbours.",
        "Én eiendom, eller naboene til eiendommen (når stien slutter på `/neighbours`).",
    ),
    (
        "Only accesses that released data about the person with this fødselsnummer.",
        "Bare tilganger som utleverte opplysninger om personen med dette fødselsnummeret.",
    ),
    (
        "Only entries about this organisation (its users' reads, or reads of its datasets).",
        "Bare oppføringer om denne virksomheten (brukernes lesing eller lesing av virksomhetens datasett).",
    ),
    ("Only entries of this user name.", "Bare oppføringer for dette brukernavnet."),
    ("Only entries that name this dataset (`org/dataset`).", "Bare oppføringer som gjelder dette datasettet (`org/dataset`)."),
    ("Organisasjonsnummer (9 digits; NO…MVA accepted)", "Organisasjonsnummer (9 siffer; NO…MVA godtas)"),
    ("Owning department", "Avdelingen som eier dataene"),
    ("Owning organisation", "Virksomheten som eier dataene"),
    (
        "Per child of kindergarten age: the place, the applications and offers, and the monthly price",
        "For hvert barn i barnehagealder: plassen, søknader og tilbud, og månedsprisen",
    ),
    ("Per kindergarten: places free and applicants by age group", "Per barnehage: ledige plasser og søkere etter aldersgruppe"),
    (
        "Properties whose address starts with `address` (case aside), as the caller may see them; a\ncitizen finds only properties they own (all of them without `address`).",
        "Eiendommer der adressen begynner med `address` (uavhengig av store og små bokstaver), slik du har lov å se dem; en innbygger finner bare egne eiendommer (alle når `address` er utelatt).",
    ),
    (
        "Read the version current at this time (RFC 3339 or a date)",
        "Les versjonen som gjaldt på dette tidspunktet (RFC 3339 eller en dato)",
    ),
    ("Read this version", "Les denne versjonen"),
    ("Reads a dataset's rows.", "Leser radene i et datasett."),
    ("Requests an agreement (the consumer's steward or admin).", "Ber om en delingsavtale (forvalter eller administrator hos mottakeren)."),
    (
        "Return geometries in this CRS (EPSG:4326, EPSG:25832 or EPSG:25833) instead of the stored one",
        "Returner geometrier i dette koordinatsystemet (EPSG:4326, EPSG:25832 eller EPSG:25833) i stedet for det lagrede",
    ),
    (
        "Rows in a JSON page (default 100, at most 10000); for files, at most this many rows",
        "Rader per JSON-side (standard 100, høyst 10 000); for filer høyst så mange rader",
    ),
    ("Rows to skip", "Antall rader som hoppes over"),
    (
        "Rows whose geometry lies within a distance of a point: x,y,metres",
        "Rader der geometrien ligger innenfor en avstand fra et punkt: x,y,meter",
    ),
    (
        "Rows whose geometry meets this box: minx,miny,maxx,maxy (longitude/easting first)",
        "Rader der geometrien ligger helt eller delvis i dette rektangelet: minx,miny,maxx,maxy (lengdegrad/øst først)",
    ),
    (
        "Runs the query. The first batch is computed before the response starts, so errors in\nplanning and in most executions arrive as problems; a later failure ends the body early.",
        "Kjører spørringen. Den første bolken beregnes før svaret begynner, så feil i planleggingen og i de fleste kjøringer kommer som problemsvar; en senere feil avslutter svaret før tiden.",
    ),
    (
        "The rows versions inserted and deleted after `from_version`, up to `to_version`: each row as\na read shows it (columns, masks, row filter, address protection), with `_change` (`insert`\nor `delete`) and `_version`; oldest version first, and within a version deleted rows before\ninserted ones. An upsert's changed row is its old form deleted and its new form inserted. In\nthe access log like a read.",
        "Radene versjonene la til og slettet etter `from_version`, til og med `to_version`: hver rad slik en lesing viser den (kolonner, maskering, radfilter, adressebeskyttelse), med `_change` (`insert` eller `delete`) og `_version`; eldste versjon først, og innen en versjon slettede rader før nye. En rad som ble endret ved oppdatering etter nøkkel, vises som den gamle raden slettet og den nye lagt til. Står i tilgangsloggen som en lesing.",
    ),
    ("The changes after this version.", "Endringene etter denne versjonen."),
    ("Up to and including this version (default: the latest).", "Til og med denne versjonen (standard: den nyeste)."),
    ("json (default), csv, ndjson, geojson, xlsx or parquet.", "json (standard), csv, ndjson, geojson, xlsx eller parquet."),
    ("The purpose, as for a read (or the Tverr-Purpose header).", "Formålet, som ved en lesing (eller hodefeltet Tverr-Purpose)."),
    ("The changed rows: JSON, or a file in the format asked for", "De endrede radene: JSON, eller en fil i formatet du ba om"),
    ("TAG:connectors", "Koblinger"),
    ("The connectors of the datasets the caller may write.", "Koblingene til datasettene du har lov å skrive til."),
    ("The caller's connectors", "Koblingene dine"),
    ("Makes a connector that writes in the caller's name.", "Lager en kobling som skriver i ditt navn."),
    ("The connector (never its secrets)", "Koblingen (aldri hemmelighetene)"),
    ("Deletes a connector (its token is revoked).", "Sletter en kobling (API-nøkkelen dens trekkes tilbake)."),
    ("Deleted", "Slettet"),
    ("One connector.", "Én kobling."),
    ("The connector", "Koblingen"),
    (
        "Runs a connector now and answers when it has finished: its runs (one per file for a drop\nfolder). A failed run is a run too (200, with its error); 409 when another node is running it.",
        "Kjører en kobling nå og svarer når den er ferdig: kjøringene (én per fil for en leveringsmappe). En mislykket kjøring er også en kjøring (200, med feilen); 409 når en annen node kjører den.",
    ),
    ("The runs it made", "Kjøringene den gjorde"),
    ("A connector's last runs, newest first.", "De siste kjøringene til en kobling, nyeste først."),
    ("How many (default 20, at most 1,000).", "Hvor mange (standard 20, høyst 1 000)."),
    ("Its runs", "Kjøringene"),
    ("TAG:subscriptions", "Abonnementer"),
    ("The caller's subscriptions.", "Abonnementene dine."),
    ("The caller's subscriptions", "Abonnementene dine"),
    (
        "Subscribes the caller to a dataset they may read: every new version is POSTed to `url` as a\nsigned event. The answer holds the signing secret, which is not shown again.",
        "Abonnerer på et datasett du har lov å lese: hver nye versjon sendes som en signert hendelse med POST til `url`. Svaret inneholder signeringshemmeligheten, som ikke vises igjen.",
    ),
    ("The subscription and its signing secret (shown once)", "Abonnementet og signeringshemmeligheten (vises én gang)"),
    (
        "Deletes a subscription: its events stop and its token is revoked.",
        "Sletter et abonnement: hendelsene stanser, og API-nøkkelen trekkes tilbake.",
    ),
    ("One subscription (never its secret).", "Ett abonnement (aldri hemmeligheten)."),
    ("The subscription", "Abonnementet"),
    (
        "A subscription's events, newest version first: delivered, pending (with the last error),\nfailed after the retry window, or withheld because the subscriber could no longer read the\ndataset.",
        "Hendelsene til et abonnement, nyeste versjon først: levert, venter (med siste feil), mislyktes etter at forsøksperioden var over, eller holdt tilbake fordi abonnenten ikke lenger hadde lov å lese datasettet.",
    ),
    ("How many (default 50, at most 1,000).", "Hvor mange (standard 50, høyst 1 000)."),
    ("Its deliveries", "Leveringene"),
    ("TAG:access", "Innlogging"),
    ("TAG:agreements", "Delingsavtaler"),
    ("TAG:audit", "Revisjon"),
    ("TAG:catalogue", "Datakatalog"),
    ("TAG:citizens", "Innbyggere"),
    ("TAG:data", "Data"),
    ("TAG:look-ups", "Oppslag"),
    ("TAG:service", "Drift"),
    ("TAG:services", "Tjenester"),
    ("TAG:uploads", "Opplasting"),
    ("The OpenAPI 3.1 document of this API", "OpenAPI-dokumentet (versjon `3.1`) for dette API-et"),
    ("The agreement and its history", "Avtalen med historikk"),
    ("The agreement in its new state", "Avtalen med ny status"),
    (
        "The catalogue, searched and filtered: `q` (words, Norwegian forms), `theme`, `org`,\n`department`, `classification`. It lists open datasets, those the caller may read for some\npurpose, and the metadata of every dataset of the caller's own organisation (finding data is\nthe point; the rows stay behind the policy).",
        "Katalogen, med søk og filtre: `q` (ord, norske bøyningsformer), `theme`, `org`, `department`, `classification`. Den viser åpne datasett, datasett du har lov å lese for et formål, og metadata for alle datasett i din egen virksomhet (poenget er å finne data; radene er fortsatt beskyttet av tilgangsreglene).",
    ),
    ("The key column of an upsert", "Nøkkelkolonnen ved `upsert`"),
    (
        "The kindergarten admission overview, for the admission case worker.",
        "Oversikt over barnehageopptaket, for saksbehandleren i opptaket.",
    ),
    ("The new version", "Den nye versjonen"),
    (
        "The property as the caller may see it, with its zoning plans; or its neighbours",
        "Eiendommen slik du har lov å se den, med reguleringsplaner; eller naboene",
    ),
    ("The purpose (or the Tverr-Purpose header)", "Formålet (eller hodefeltet Tverr-Purpose)"),
    ("The purpose (or the Tverr-Purpose header); none for a citizen", "Formålet (eller hodefeltet Tverr-Purpose); utelates for innbyggere"),
    (
        "The purpose, e.g. barnehageopptak (or the Tverr-Purpose header)",
        "Formålet, f.eks. barnehageopptak (eller hodefeltet Tverr-Purpose)",
    ),
    (
        "The purpose, e.g. byggesaksbehandling (or the Tverr-Purpose header); none for a citizen",
        "Formålet, f.eks. byggesaksbehandling (eller hodefeltet Tverr-Purpose); utelates for innbyggere",
    ),
    ("The requested agreement", "Den forespurte avtalen"),
    ("The result, streamed", "Resultatet, sendt som strøm"),
    ("The rows about the organisation the caller may see for the purpose", "Radene om virksomheten som du har lov å se for formålet"),
    ("The rows about the person the caller may see for the purpose", "Radene om personen som du har lov å se for formålet"),
    ("The rows about the property the caller may see for the purpose", "Radene om eiendommen som du har lov å se for formålet"),
    (
        "Liveness: the process answers. It reads nothing, so a catalogue or storage that is down does\nnot make a load balancer restart every node (`/ready` says whether a node can serve).",
        "Om prosessen lever: den svarer. Den leser ingenting, så en katalog eller lagring som er nede,\nfår ikke en lastbalanserer til å starte alle nodene på nytt (`/ready` sier om en node kan betjene forespørsler).",
    ),
    ("The process answers", "Prosessen svarer"),
    ("The node's metrics in Prometheus' text format", "Nodens måltall i Prometheus' tekstformat"),
    (
        "`GET /metrics`: Prometheus' text format. With `TVERR_METRICS_TOKEN` set, only a request that\nsends it as `Authorization: Bearer …` gets them (404 otherwise, as for a route that is not\nthere).",
        "`GET /metrics`: Prometheus' tekstformat. Når `TVERR_METRICS_TOKEN` er satt, får bare en forespørsel\nsom sender det som `Authorization: Bearer …`, måltallene (ellers 404, som for en rute som ikke\nfinnes).",
    ),
    (
        "Readiness: the catalogue, storage and the access log answer, and the writes a crash left are\nfinished. 503 with `Retry-After` otherwise; what failed is logged, never shown.",
        "Om noden er klar: katalogen, lagringen og tilgangsloggen svarer, og skrivinger som et krasj\navbrøt, er fullført. Ellers 503 med `Retry-After`; hva som feilet, logges og vises aldri.",
    ),
    ("The node can serve requests", "Noden kan betjene forespørsler"),
    (
        "A service the node needs does not answer, or it is still finishing interrupted writes",
        "En tjeneste noden trenger, svarer ikke, eller noden fullfører fortsatt avbrutte skrivinger",
    ),
    ("The API's parts and where they are", "Delene av API-et og hvor de er"),
    ("Where the API's parts are.", "Hvor delene av API-et er."),
    ("The API's name.", "Navnet på API-et."),
    ("Its parts: `rel`, `href` and media `type` of each.", "Delene: `rel`, `href` og medietype (`type`) for hver."),
    (
        "`GET /api/v1`: where the API's parts are, for people and link checkers that start at its\nroot (the DCAT data service's endpoint).",
        "`GET /api/v1`: hvor delene av API-et er, for folk og lenkesjekkere som begynner ved roten (endepunktet til DCAT-datatjenesten).",
    ),
    (
        "The start of an address, e.g. Storgata 12; at least two letters (a citizen may leave it out)",
        "Begynnelsen av en adresse, f.eks. Storgata 12; minst to bokstaver (innbyggere kan utelate den)",
    ),
    ("This document.", "Dette dokumentet."),
    ("What the check of the chain and checkpoints found", "Resultatet av kontrollen av kjeden og kontrollpunktene"),
    (
        "Words to find in titles, descriptions, keywords and column names (Norwegian word forms)",
        "Ord å søke etter i titler, beskrivelser, stikkord og kolonnenavn (norske bøyningsformer)",
    ),
    (
        "`GET /api/v1/datasets/{org}/{dataset}/versions`: its history, newest last. Needs what reading\nthe dataset needs.",
        "`GET /api/v1/datasets/{org}/{dataset}/versions`: historikken, nyeste sist. Krever det samme som å lese datasettet.",
    ),
    (
        "`POST /api/v1/datasets/{org}/{dataset}/versions?mode=append|replace|upsert&key=` with the file.",
        "`POST /api/v1/datasets/{org}/{dataset}/versions?mode=append|replace|upsert&key=` med filen.",
    ),
    (
        "`POST /api/v1/datasets?org=&dataset=&department=&title=&classification=…` with the file.",
        "`POST /api/v1/datasets?org=&dataset=&department=&title=&classification=…` med filen.",
    ),
    ("`approve`, `deny` or `revoke`.", "`approve`, `deny` eller `revoke`."),
    ("append (default), replace or upsert", "append (standard), replace eller upsert"),
    ("approve, deny or revoke", "approve, deny eller revoke"),
    (
        "json (pages), csv, ndjson, geojson, xlsx or parquet (whole files); or use Accept",
        "json (sider), csv, ndjson, geojson, xlsx eller parquet (hele filer); eller bruk hodefeltet Accept",
    ),
];

#[cfg(test)]
mod tests {
    #[test]
    fn every_text_of_the_api_document_has_its_bokmal() {
        let doc = serde_json::to_value(crate::openapi()).expect("the document");
        let texts = super::super::pages::api_texts(&doc);
        assert!(texts.len() > 50, "only {} texts; is the walk right?", texts.len());
        let missing: Vec<&String> = texts.iter().filter(|t| !super::API_NB.iter().any(|(en, _)| en == t)).collect();
        assert!(missing.is_empty(), "texts of the API document without bokmål in api_nb.rs: {missing:#?}");
    }
}
