//! Norwegian names and places for the synthetic population.

pub const FIRST_FEMALE: &[&str] = &[
    "Anne", "Inger", "Kari", "Marit", "Ingrid", "Liv", "Eva", "Berit", "Astrid", "Bjørg", "Hilde", "Anna",
    "Solveig", "Marianne", "Randi", "Ida", "Nina", "Maria", "Elisabeth", "Kristin", "Sofie", "Nora", "Emma",
    "Ingeborg", "Åse", "Sigrid", "Tone", "Silje", "Thea", "Maja", "Olivia", "Ella", "Frøya", "Live", "Tiril",
];
pub const FIRST_MALE: &[&str] = &[
    "Jan", "Per", "Bjørn", "Ole", "Lars", "Kjell", "Knut", "Arne", "Svein", "Thomas", "Hans", "Geir", "Tor",
    "Morten", "Terje", "Odd", "Erik", "Martin", "Andreas", "John", "Anders", "Håkon", "Jakob", "Emil", "Noah",
    "Oskar", "Lukas", "Filip", "Aksel", "Sander", "Magnus", "Øyvind", "Pål", "Ståle", "Ivar",
];
pub const LAST: &[&str] = &[
    "Hansen", "Johansen", "Olsen", "Larsen", "Andersen", "Pedersen", "Nilsen", "Kristiansen", "Jensen",
    "Karlsen", "Johnsen", "Pettersen", "Eriksen", "Berg", "Haugen", "Hagen", "Johannessen", "Andreassen",
    "Jacobsen", "Dahl", "Jørgensen", "Halvorsen", "Henriksen", "Lund", "Sørensen", "Jakobsen", "Moen",
    "Gundersen", "Iversen", "Strand", "Solberg", "Svendsen", "Eide", "Knutsen", "Martinsen", "Paulsen",
    "Bakken", "Kristoffersen", "Mathisen", "Lie", "Amundsen", "Nguyen", "Rasmussen", "Ali", "Lunde",
    "Solheim", "Berge", "Bakke", "Moe", "Nygård", "Bøe", "Ødegård", "Sæther", "Løken", "Fjeld", "Ånestad",
];

/// Streets with their bydel and postnummer in Hamar.
pub const STREETS: &[(&str, &str, &str)] = &[
    ("Storgata", "Sentrum", "2317"),
    ("Torggata", "Sentrum", "2317"),
    ("Grønnegata", "Sentrum", "2317"),
    ("Strandgata", "Sentrum", "2317"),
    ("Østre Torg", "Sentrum", "2317"),
    ("Parkgata", "Sentrum", "2317"),
    ("Vangsvegen", "Vang", "2318"),
    ("Furnesvegen", "Ingeberg", "2318"),
    ("Ringgata", "Sentrum", "2317"),
    ("Brugata", "Sentrum", "2321"),
    ("Holsetgata", "Sentrum", "2315"),
    ("Ringsakervegen", "Prestrud", "2312"),
    ("Vikavegen", "Børstad", "2312"),
    ("Børstadvegen", "Børstad", "2319"),
    ("Ridabuvegen", "Ridabu", "2322"),
    ("Hjellumvegen", "Hjellum", "2323"),
    ("Midtstrandvegen", "Midtstranda", "2320"),
    ("Åkersvika", "Midtstranda", "2321"),
    ("Søndre gate", "Sentrum", "2317"),
    ("Lærer Kroghs gate", "Sentrum", "2317"),
    ("Kirkevegen", "Vang", "2319"),
    ("Mjøsvegen", "Prestrud", "2312"),
    ("Solvang alle", "Ingeberg", "2318"),
    ("Bekkegata", "Sentrum", "2317"),
];

pub const KINDERGARTEN_PREFIX: &[&str] = &[
    "Solsikken", "Trollskogen", "Mjøsstranda", "Ingeberg", "Ridabu", "Vang", "Børstad", "Prestrud", "Hjellum",
    "Furuberget", "Lillehagen", "Kårtorp", "Skolegata", "Stortorget", "Rollsløkken", "Espern", "Tjuvholmen",
    "Ankerskogen", "Hedemarken", "Disen", "Storhamar", "Nydal", "Bekkelaget", "Holset", "Åkershagan",
    "Frøbekken", "Blåbærtua", "Kongsvinger", "Lysthuset", "Eventyrhagen",
];

pub const BUILDING_CASE_TYPES: &[&str] = &[
    "Tilbygg", "Garasje", "Enebolig", "Fasadeendring", "Bruksendring", "Riving", "Terrasse", "Anneks",
    "Deling av eiendom", "Dispensasjon",
];
pub const BUILDING_CASE_STATUS: &[&str] = &["Mottatt", "Under behandling", "Innvilget", "Avslått", "Trukket"];
pub const HOME_CARE_SERVICES: &[&str] = &[
    "Hjemmesykepleie", "Praktisk bistand", "Trygghetsalarm", "Matombringing", "Brukerstyrt personlig assistanse",
    "Avlastning", "Dagsenter",
];
