//! Catalog tests.

use super::*;

#[test]
fn users_databases_grants_and_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(dir.path()).unwrap();
    assert!(is_empty(&c).unwrap());
    add_user(&c, "alice").unwrap();
    add_user(&c, "bob").unwrap();
    assert!(matches!(
        add_user(&c, "alice"),
        Err(CatalogError::Exists { .. })
    ));
    assert!(matches!(
        add_user(&c, "../x"),
        Err(CatalogError::InvalidName { .. })
    ));
    let id = create_database(&c, "notes", "alice").unwrap();
    let t = issue_token(&c, "alice", "laptop").unwrap();
    assert!(t.token.starts_with(TOKEN_PREFIX) && t.token.len() == 47);
    let h = token_hash(&t.token);
    assert_eq!(
        authorize(&c, &h, "notes").unwrap(),
        Authorization::Granted(Grant {
            database_id: id,
            access: Access::ReadWrite,
            device: "laptop".into()
        })
    );
    assert_eq!(authorize(&c, &h, "other").unwrap(), Authorization::NoGrant);
    let b = issue_token(&c, "bob", "phone").unwrap();
    let hb = token_hash(&b.token);
    assert_eq!(authorize(&c, &hb, "notes").unwrap(), Authorization::NoGrant);
    grant(&c, "notes", "bob", Access::ReadOnly).unwrap();
    assert!(matches!(
        authorize(&c, &hb, "notes").unwrap(),
        Authorization::Granted(Grant {
            access: Access::ReadOnly,
            ..
        })
    ));
    assert!(matches!(
        issue_token(&c, "bob", "laptop"),
        Err(CatalogError::DeviceOwnedByOther { .. })
    ));
    assert_eq!(
        revoke_tokens(&c, &TokenSelector::TokenOrPrefix(t.shown.clone())).unwrap(),
        1
    );
    assert_eq!(authorize(&c, &h, "notes").unwrap(), Authorization::BadToken);
    assert_eq!(
        revoke_tokens(&c, &TokenSelector::Device("phone".into())).unwrap(),
        1
    );
    assert_eq!(
        authorize(&c, &hb, "notes").unwrap(),
        Authorization::BadToken
    );
    let listed = list_databases(&c).unwrap();
    assert_eq!(listed[0].grants.len(), 2);
    assert_eq!(list_tokens(&c).unwrap().len(), 2);
}

#[test]
fn ambiguous_prefixes_revoke_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(dir.path()).unwrap();
    add_user(&c, "u").unwrap();
    issue_token(&c, "u", "d1").unwrap();
    issue_token(&c, "u", "d2").unwrap();
    assert!(matches!(
        revoke_tokens(&c, &TokenSelector::TokenOrPrefix("sst_".into())),
        Err(CatalogError::Ambiguous { count: 2, .. })
    ));
    assert!(
        list_tokens(&c)
            .unwrap()
            .iter()
            .all(|t| t.revoked_ms.is_none())
    );
}
