//! Legal bases (GDPR article and Norwegian hjemmel) and purposes: what an organisation may read
//! for, and under which law.

use super::*;

impl Policy {
    /// Registers a legal basis for an organisation.
    pub async fn create_legal_basis(&self, basis: &LegalBasis) -> Result<(), PolicyError> {
        Slug::parse(&basis.slug, "legal basis").map_err(|e| PolicyError::invalid("slug", e.to_string()))?;
        self.catalog.org(&basis.org).await?;
        if !is_gdpr_article(&basis.gdpr_article) {
            return Err(PolicyError::invalid(
                "gdpr-article",
                format!("{:?}: expected an article of GDPR art. 6 or 9, e.g. 6(1)(e) or 9(2)(h)", basis.gdpr_article),
            ));
        }
        if basis.hjemmel.trim().is_empty() {
            return Err(PolicyError::invalid("hjemmel", "must name the Norwegian law, e.g. \"barnehageloven § 18\""));
        }
        if let Some(u) = &basis.lovdata_url
            && !u.starts_with("https://lovdata.no/")
        {
            return Err(PolicyError::invalid("lovdata-url", "must start with https://lovdata.no/"));
        }
        sqlx::query("INSERT INTO legal_bases (org, slug, gdpr_article, hjemmel, lovdata_url, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(&basis.org)
            .bind(&basis.slug)
            .bind(basis.gdpr_article.trim())
            .bind(basis.hjemmel.trim())
            .bind(basis.lovdata_url.clone())
            .bind(now())
            .execute(self.pool())
            .await
            .map_err(|e| exists_or(e, "legal basis", &basis.slug))?;
        Ok(())
    }

    /// One legal basis.
    pub async fn legal_basis(&self, org: &str, slug: &str) -> Result<LegalBasis, PolicyError> {
        sqlx::query_as("SELECT org, slug, gdpr_article, hjemmel, lovdata_url FROM legal_bases WHERE org = $1 AND slug = $2")
            .bind(org)
            .bind(slug)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| not_found("legal basis", format!("{org}/{slug}")))
    }

    /// An organisation's legal bases.
    pub async fn legal_bases(&self, org: &str) -> Result<Vec<LegalBasis>, PolicyError> {
        Ok(sqlx::query_as("SELECT org, slug, gdpr_article, hjemmel, lovdata_url FROM legal_bases WHERE org = $1 ORDER BY slug")
            .bind(org)
            .fetch_all(self.pool())
            .await?)
    }

    /// Registers a purpose; its legal basis must be registered in the same organisation.
    pub async fn create_purpose(&self, p: &Purpose) -> Result<(), PolicyError> {
        Slug::parse(&p.slug, "purpose").map_err(|e| PolicyError::invalid("slug", e.to_string()))?;
        if let Some(d) = &p.department {
            self.catalog.department(&p.org, d).await?;
        }
        self.legal_basis(&p.org, &p.legal_basis).await?;
        if p.name.trim().is_empty() {
            return Err(PolicyError::invalid("name", "must not be empty"));
        }
        sqlx::query(
            "INSERT INTO purposes (org, slug, department, name, description, legal_basis, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&p.org)
        .bind(&p.slug)
        .bind(p.department.clone())
        .bind(p.name.trim())
        .bind(p.description.trim())
        .bind(&p.legal_basis)
        .bind(now())
        .execute(self.pool())
        .await
        .map_err(|e| exists_or(e, "purpose", &p.slug))?;
        Ok(())
    }

    /// An organisation's purposes.
    pub async fn purposes(&self, org: &str) -> Result<Vec<Purpose>, PolicyError> {
        Ok(sqlx::query_as("SELECT org, slug, department, name, description, legal_basis FROM purposes WHERE org = $1 ORDER BY slug")
            .bind(org)
            .fetch_all(self.pool())
            .await?)
    }

    // ---- agreements ----
}

/// `6(1)(a)`–`6(1)(f)` or `9(2)(a)`–`9(2)(j)`.
pub(crate) fn is_gdpr_article(s: &str) -> bool {
    let s = s.trim();
    let letter = |l: &str, last: char| l.len() == 1 && l.chars().all(|c| ('a'..=last).contains(&c));
    if let Some(l) = s.strip_prefix("6(1)(").and_then(|x| x.strip_suffix(')')) {
        return letter(l, 'f');
    }
    if let Some(l) = s.strip_prefix("9(2)(").and_then(|x| x.strip_suffix(')')) {
        return letter(l, 'j');
    }
    false
}
