//! The demo's people and paperwork: users, legal bases, purposes and sharing agreements with
//! real Norwegian legal bases.

use std::collections::BTreeMap;

use tverr_policy::{AgreementRequest, DatasetTerms, LegalBasis, Mask, OperatorKey, Policy, PolicyError, Purpose, Role};

/// The password of every demo user (documented in the README; for the demo only).
pub const DEMO_PASSWORD: &str = "hamar-demo-2026";

/// Demo users: (org, department, username, role).
pub const USERS: &[(&str, Option<&str>, &str, Role)] = &[
    ("hamar", None, "admin", Role::Admin),
    ("hamar", Some("oppvekst"), "kari", Role::Steward),
    ("hamar", Some("byggesak"), "ola", Role::Employee),
    ("hamar", Some("helse"), "nina", Role::Employee),
    ("hamar", Some("eiendomsskatt"), "per", Role::Employee),
    ("hamar", Some("folkeregister"), "siri", Role::Employee),
    ("hamar", None, "revisor", Role::Auditor),
    // The service desk: one employee who answers citizens about everything the kommune holds.
    ("hamar", Some("servicetorg"), "tove", Role::Employee),
    ("hias", Some("vann"), "lise", Role::Steward),
    // Stewards of the other providing departments, who approve their agreements.
    ("hamar", Some("folkeregister"), "frode", Role::Steward),
    ("hamar", Some("byggesak"), "bjorn", Role::Steward),
    ("hamar", Some("helse"), "hanne", Role::Steward),
    ("hamar", Some("eiendomsskatt"), "eva", Role::Steward),
    ("hias", None, "hias-admin", Role::Admin),
];

/// (org, slug, GDPR article, hjemmel, lovdata URL).
const LEGAL_BASES: &[(&str, &str, &str, &str, &str)] = &[
    ("hamar", "barnehageloven-18", "6(1)(e)", "barnehageloven § 18 (opptak)", "https://lovdata.no/lov/2005-06-17-64/§18"),
    (
        "hamar",
        "hol-3-2-helsestasjon",
        "9(2)(h)",
        "helse- og omsorgstjenesteloven § 3-2 første ledd nr. 1 (helsestasjon)",
        "https://lovdata.no/lov/2011-06-24-30/§3-2",
    ),
    (
        "hamar",
        "hol-3-2-hjemmetjenester",
        "9(2)(h)",
        "helse- og omsorgstjenesteloven § 3-2 første ledd nr. 6 bokstav a (helsetjenester i hjemmet)",
        "https://lovdata.no/lov/2011-06-24-30/§3-2",
    ),
    (
        "hamar",
        "pbl-21-3",
        "6(1)(e)",
        "plan- og bygningsloven § 21-3 (nabovarsel) og byggesaksforskriften § 5-2",
        "https://lovdata.no/lov/2008-06-27-71/§21-3",
    ),
    ("hamar", "pbl-21-4", "6(1)(e)", "plan- og bygningsloven § 21-4 (behandling av søknad)", "https://lovdata.no/lov/2008-06-27-71/§21-4"),
    (
        "hamar",
        "eigedomsskattelova-8a",
        "6(1)(e)",
        "eigedomsskattelova §§ 3 og 8 A-2 (utskriving og verdsetting)",
        "https://lovdata.no/lov/1975-06-06-29",
    ),
    (
        "hamar",
        "vass-og-avlopsanleggslova-3",
        "6(1)(e)",
        "vass- og avløpsanleggslova § 3 (kommunale gebyr)",
        "https://lovdata.no/lov/2012-03-16-12/§3",
    ),
    (
        "hamar",
        "folkeregisterloven-10-2",
        "6(1)(e)",
        "folkeregisterloven § 10-2 (utlevering til offentlige myndigheter)",
        "https://lovdata.no/lov/2016-12-09-88/§10-2",
    ),
    (
        "hamar",
        "foreldrebetaling",
        "6(1)(e)",
        "barnehageloven § 15 og forskrift om foreldrebetaling i barnehager (redusert foreldrebetaling)",
        "https://lovdata.no/forskrift/2005-12-16-1478",
    ),
    (
        "hamar",
        "fvl-11-veiledning",
        "6(1)(e)",
        "forvaltningsloven § 11 (veiledningsplikt) og kommuneloven § 4-1 (innbyggerservice)",
        "https://lovdata.no/lov/1967-02-10/§11",
    ),
    (
        "hias",
        "vass-og-avlopsanleggslova-3",
        "6(1)(e)",
        "vass- og avløpsanleggslova § 3 (vassforsyning og gebyr)",
        "https://lovdata.no/lov/2012-03-16-12/§3",
    ),
];

/// (org, slug, department, name, legal basis).
const PURPOSES: &[(&str, &str, &str, &str, &str)] = &[
    ("hamar", "barnehageopptak", "oppvekst", "Barnehageopptak", "barnehageloven-18"),
    ("hamar", "helsestasjon", "helse", "Helsestasjons- og skolehelsetjeneste", "hol-3-2-helsestasjon"),
    ("hamar", "hjemmetjenester", "helse", "Helsetjenester i hjemmet", "hol-3-2-hjemmetjenester"),
    ("hamar", "byggesaksbehandling", "byggesak", "Behandling av byggesøknader", "pbl-21-4"),
    ("hamar", "eiendomsskatt", "eiendomsskatt", "Utskriving av eiendomsskatt", "eigedomsskattelova-8a"),
    ("hamar", "vanngebyr", "eiendomsskatt", "Fakturering av vann- og avløpsgebyr", "vass-og-avlopsanleggslova-3"),
    ("hamar", "folkeregisterforvaltning", "folkeregister", "Forvaltning av befolkningskopien", "folkeregisterloven-10-2"),
    ("hamar", "innbyggerservice", "servicetorg", "Svar til innbyggere i servicetorget", "fvl-11-veiledning"),
    ("hias", "vannforsyning", "vann", "Drift av vannforsyningen", "vass-og-avlopsanleggslova-3"),
];

fn dataset(name: &str, columns: &[&str], masks: &[(&str, Mask)], row_filter: Option<&str>) -> DatasetTerms {
    DatasetTerms {
        dataset: name.into(),
        columns: columns.iter().map(|c| c.to_string()).collect(),
        masks: masks.iter().map(|(c, m)| (c.to_string(), *m)).collect::<BTreeMap<_, _>>(),
        row_filter: row_filter.map(str::to_string),
        min_group_size: None,
    }
}

/// Creates the demo's users, legal bases, purposes and agreements.
pub async fn create(policy: &Policy, operator: &OperatorKey) -> Result<(), PolicyError> {
    for (org, dept, name, role) in USERS {
        policy.create_user(org, *dept, name, *role, Some(DEMO_PASSWORD)).await?;
    }
    for (org, slug, article, hjemmel, url) in LEGAL_BASES {
        policy
            .create_legal_basis(&LegalBasis {
                org: org.to_string(),
                slug: slug.to_string(),
                gdpr_article: article.to_string(),
                hjemmel: hjemmel.to_string(),
                lovdata_url: Some(url.to_string()),
            })
            .await?;
    }
    for (org, slug, dept, name, basis) in PURPOSES {
        policy
            .create_purpose(&Purpose {
                org: org.to_string(),
                slug: slug.to_string(),
                department: Some(dept.to_string()),
                name: name.to_string(),
                description: String::new(),
                legal_basis: basis.to_string(),
            })
            .await?;
    }
    let user = |name: &'static str| async move { policy.user(name).await.map(|u| operator.act_as(u)) };
    let admin = user("admin").await?;
    let day = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("a valid demo date");
    let request = |provider: &str, consumer: &str, datasets: Vec<DatasetTerms>, purpose: &str| AgreementRequest {
        provider: provider.parse().expect("demo party"),
        consumer: consumer.parse().expect("demo party"),
        datasets,
        purposes: vec![purpose.to_string()],
        legal_basis: None,
        valid_from: Some(day("2025-01-01")),
        valid_to: None,
        release_fortrolig: false,
    };

    // The admin asks; the provider's steward approves.
    let admin = &admin;
    let agree = |req: AgreementRequest, approver: &'static str, note: Option<&'static str>| async move {
        let a = policy.request_agreement(admin, req).await?;
        policy.approve(&user(approver).await?, a.id, note).await
    };

    // 1. Folkeregister → byggesak: who lives where, with the person number as a pseudonym.
    agree(
        request(
            "hamar/folkeregister",
            "hamar/byggesak",
            vec![dataset(
                "hamar/innbyggere",
                &["fodselsnummer", "fornavn", "etternavn", "adresse", "postnummer", "poststed"],
                &[("fodselsnummer", Mask::Hmac)],
                None,
            )],
            "byggesaksbehandling",
        ),
        "frode",
        Some("Nødvendig for nabovarsling og saksbehandling"),
    )
    .await?;

    // 2. Oppvekst → helse: kindergarten places for the health centre.
    agree(request("hamar/oppvekst", "hamar/helse", vec![dataset("hamar/barnehageplasser", &[], &[], None)], "helsestasjon"), "kari", None)
        .await?;

    // 3. Hias IKS vann → Hamar eiendomsskatt: water meters and readings, across organisations.
    agree(
        request(
            "hias/vann",
            "hamar/eiendomsskatt",
            vec![
                dataset("hias/vannmalere", &[], &[], None),
                dataset("hias/vannmaler_avlesninger", &[], &[("forbruk_m3", Mask::Round(1.0))], None),
            ],
            "vanngebyr",
        ),
        "lise",
        Some("Gebyrgrunnlag for Hamar kommune"),
    )
    .await?;

    // 4. Byggesak → eiendomsskatt: cases without the applicant.
    agree(
        request(
            "hamar/byggesak",
            "hamar/eiendomsskatt",
            vec![dataset(
                "hamar/byggesaker",
                &["saksnr", "matrikkel", "sakstype", "status", "mottatt", "vedtatt"],
                &[],
                Some("status IN ('Innvilget', 'Avslått')"),
            )],
            "eiendomsskatt",
        ),
        "bjorn",
        None,
    )
    .await?;

    // 5. An agreement that has expired: folkeregister → eiendomsskatt for 2024.
    let mut expired = request(
        "hamar/folkeregister",
        "hamar/eiendomsskatt",
        vec![dataset("hamar/innbyggere", &["fodselsnummer", "adresse"], &[], None)],
        "eiendomsskatt",
    );
    expired.valid_from = Some(day("2024-01-01"));
    expired.valid_to = Some(day("2024-12-31"));
    agree(expired, "frode", None).await?;

    // 6. Statistics only: the population per district and birth year for the health centre.
    let mut stats = dataset("hamar/innbyggere", &["bydel", "postnummer", "fodselsdato"], &[("fodselsdato", Mask::YearOnly)], None);
    stats.min_group_size = Some(5);
    let stats = request("hamar/folkeregister", "hamar/helse", vec![stats], "helsestasjon");
    agree(stats, "frode", Some("Kun statistikk, grupper under 5 skjules")).await?;

    // 7. A request not yet approved: oppvekst asks the population register for admissions.
    policy
        .request_agreement(
            &user("kari").await?,
            request(
                "hamar/folkeregister",
                "hamar/oppvekst",
                vec![dataset("hamar/innbyggere", &["fodselsnummer", "fornavn", "etternavn", "fodselsdato", "adresse"], &[], None)],
                "barnehageopptak",
            ),
        )
        .await?;

    // 8. The service desk: what it needs to answer a citizen about their own matters, from four
    // departments and Hias IKS. Health data is not shared with it.
    let shared: [(&str, DatasetTerms, &'static str); 5] = [
        (
            "hamar/folkeregister",
            dataset(
                "hamar/innbyggere",
                &["fodselsnummer", "fornavn", "etternavn", "adresse", "postnummer", "poststed", "bydel"],
                &[],
                None,
            ),
            "frode",
        ),
        ("hamar/oppvekst", dataset("hamar/barnehageplasser", &["barn_fnr", "foresatt_fnr", "barnehage", "startdato"], &[], None), "kari"),
        (
            "hamar/byggesak",
            dataset("hamar/byggesaker", &["saksnr", "matrikkel", "soker_fnr", "sakstype", "status", "mottatt", "vedtatt"], &[], None),
            "bjorn",
        ),
        (
            "hamar/eiendomsskatt",
            dataset("hamar/eiendommer", &["matrikkel", "adresse", "areal_m2", "eier_fnr", "eier_orgnr"], &[], None),
            "eva",
        ),
        ("hias/vann", dataset("hias/vannmalere", &[], &[], None), "lise"),
    ];
    for (provider, terms, steward) in shared {
        let req = request(provider, "hamar/servicetorg", vec![terms], "innbyggerservice");
        agree(req, steward, Some("Servicetorget svarer innbyggere på henvendelser")).await?;
    }

    // 9. Eiendomsskatt → byggesak: the property register for building cases and neighbour
    // notices (pbl § 21-3): the parcel, its address and tax valuation, and the owners' names.
    // The owners' person numbers are not needed to notify them and are not shared.
    let mut notices = request(
        "hamar/eiendomsskatt",
        "hamar/byggesak",
        vec![dataset("hamar/eiendommer", &["matrikkel", "adresse", "areal_m2", "eier_navn", "eier_orgnr", "takst", "geometry"], &[], None)],
        "byggesaksbehandling",
    );
    notices.legal_basis = Some("pbl-21-3".to_string());
    agree(notices, "eva", Some("Eiendomsopplysninger og eiere for byggesaksbehandling og nabovarsling")).await?;

    // 10. Hias IKS vann → byggesak: the water meter and connection of a property in a case.
    let water = request("hias/vann", "hamar/byggesak", vec![dataset("hias/vannmalere", &[], &[], None)], "byggesaksbehandling");
    agree(water, "lise", Some("Vanntilknytning i byggesaker")).await?;
    Ok(())
}
