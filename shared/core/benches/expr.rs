//! Parse once, evaluate many: the cost of expressions per user.
//!
//! `cargo bench -p userprov-core --bench expr`. A plain timing loop rather than a benchmark
//! framework, to keep the dependency tree small; it prints the mean time per operation.

use std::error::Error;
use std::hint::black_box;
use std::time::Instant;

use serde_json::{Value, json};
use userprov_core::expr::{Expr, Tables};
use userprov_core::ids::SalesforceId;
use userprov_core::source::SourceUser;

/// Five functions deep: the kind of rule that builds a login from a name.
const FIVE_FUNCTIONS: &str = r#"lower(concat(left(normalize_diacritics(FirstName), 1), ".", replace(normalize_diacritics(LastName), " ", "")))"#;

const FILTER: &str = r#"IsActive == true and Department in ["Sales", "Support"] and lower(Email) ends_with "@acme.example" and Title is null"#;

/// Fifteen bare fields and five expressions: one app's mapping.
const MAPPING: &[&str] = &[
    "Username",
    "FirstName",
    "LastName",
    "Email",
    "Id",
    "Title",
    "Department",
    "Phone",
    "MobilePhone",
    "CompanyName",
    "Division",
    "EmployeeNumber",
    "City",
    "Country",
    "Manager.Email",
    FIVE_FUNCTIONS,
    r#"join(" ", FirstName, MiddleName, LastName)"#,
    r#"default(lookup(Department, "departments"), "GEN")"#,
    r#"format_date(HireDate__c, "date")"#,
    r#"if(IsActive, "active", "inactive")"#,
];

fn marta() -> Result<SourceUser, Box<dyn Error>> {
    let mut user = SourceUser::new(SalesforceId::parse("0058a00000LmN2pAAF")?);
    let fields = json!({
        "Username": "marta.fernandez@acme.example",
        "FirstName": "Marta",
        "LastName": "Fernández Søgaard",
        "Email": "Marta.Fernandez@acme.example",
        "Department": "Sales",
        "IsActive": "true",
        "Phone": "+34 600 000 000",
        "CompanyName": "Acme",
        "Division": "EMEA",
        "EmployeeNumber": "10042",
        "City": "Sevilla",
        "Country": "ES",
        "HireDate__c": "2024-02-01",
        "LastModifiedDate": "2025-03-14T16:02:11.000Z",
        "Manager": {"Email": "boss@acme.example"},
        "Title": null,
    });
    if let Value::Object(map) = fields {
        user.fields = map.into_iter().collect();
    }
    Ok(user)
}

fn time(label: &str, iterations: u32, mut operation: impl FnMut()) {
    for _ in 0..iterations / 10 {
        operation();
    }
    let start = Instant::now();
    for _ in 0..iterations {
        operation();
    }
    let per = start.elapsed() / iterations;
    println!("{label:<48} {:>10.2?}", per);
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut departments = std::collections::BTreeMap::new();
    departments.insert("Sales".to_owned(), "SLS".to_owned());
    let mut tables = Tables::new();
    tables.insert("departments".to_owned(), departments);
    let user = marta()?;

    let five = Expr::parse(FIVE_FUNCTIONS, &tables)?;
    let filter = Expr::parse(FILTER, &tables)?;
    let mapping = MAPPING
        .iter()
        .map(|source| Expr::parse(source, &tables))
        .collect::<Result<Vec<_>, _>>()?;
    println!("{FIVE_FUNCTIONS} -> {}", five.eval(&user)?);

    time("parse the five-function expression", 100_000, || {
        let _ = black_box(Expr::parse(black_box(FIVE_FUNCTIONS), &tables));
    });
    time("eval the five-function expression", 1_000_000, || {
        let _ = black_box(five.eval(black_box(&user)));
    });
    time("eval_bool a four-condition filter", 1_000_000, || {
        let _ = black_box(filter.eval_bool(black_box(&user)));
    });
    time(
        "eval a 20-attribute mapping (5 expressions)",
        200_000,
        || {
            for expr in &mapping {
                let _ = black_box(expr.eval(black_box(&user)));
            }
        },
    );
    Ok(())
}
