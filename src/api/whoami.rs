//! `GET /api/v1/whoami`: the calling token (id, role, label), what its role may do,
//! and the settings a client needs to show the centre's data (its time zone, the console's base
//! map). The operator console reads it at sign-in, to offer only what the role may do.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::Caller;
use super::problem::Problem;
use super::AppState;
use crate::console::TileCrs;
use crate::store::Role;

/// What a role may do, by name, as the API enforces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    /// Read persons, devices, zones, tracks, leaves and orders.
    ReadRecords,
    /// Acknowledge, verify, dispose of and close alerts.
    HandleAlerts,
    /// Follow live positions.
    FollowPositions,
    /// Send commands (a message, vibrate) to devices.
    SendCommands,
    /// Create zones and assign them.
    EditZones,
    /// Create and change persons, devices, leaves and orders.
    ManagePersons,
    /// Delete persons and zones.
    DeleteRecords,
    /// Create, list and revoke API tokens.
    ManageTokens,
    /// Read alerts and the integration feed.
    ReadAlerts,
    /// Record an officer's entries (praise, reward, warning, revocation proposal) on a
    /// person's month.
    RecordAssessments,
}

/// What each role may do.
pub fn capabilities(role: Role) -> &'static [Capability] {
    use Capability::*;
    match role {
        Role::Admin => &[
            ReadAlerts,
            ReadRecords,
            HandleAlerts,
            FollowPositions,
            SendCommands,
            EditZones,
            ManagePersons,
            DeleteRecords,
            ManageTokens,
            RecordAssessments,
        ],
        Role::Operator => &[
            ReadAlerts,
            ReadRecords,
            HandleAlerts,
            FollowPositions,
            SendCommands,
            EditZones,
            ManagePersons,
            RecordAssessments,
        ],
        Role::Integration => &[ReadAlerts],
    }
}

/// The console's base map, as configured under `[console]`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MapSettings {
    /// XYZ tile URL template; null draws the map without tiles.
    pub tile_url: Option<String>,
    /// Projection of the tiles: positions are shifted to it for display.
    #[schema(value_type = String, example = "wgs84")]
    pub tile_crs: TileCrs,
}

/// The caller and its settings.
#[derive(Debug, Serialize, ToSchema)]
pub struct WhoAmI {
    /// The token's id.
    pub token_id: Uuid,
    /// Its role.
    pub role: Role,
    /// Who holds it.
    pub label: Option<String>,
    /// What the role may do.
    pub capabilities: &'static [Capability],
    /// The centre's time zone (IANA name), in which times are shown.
    pub timezone: String,
    /// The console's base map.
    pub map: MapSettings,
}

/// Who the token is.
#[utoipa::path(
    get, path = "/api/v1/whoami", tag = "tokens",
    security(("bearer" = [])),
    responses((status = 200, description = "The calling token, its role's capabilities and \
        the centre's display settings.", body = WhoAmI)),
)]
pub async fn whoami(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<WhoAmI>, Problem> {
    Ok(Json(WhoAmI {
        token_id: caller.token_id,
        role: caller.role,
        label: caller.label,
        capabilities: capabilities(caller.role),
        timezone: state.default_timezone.name().to_owned(),
        map: MapSettings {
            tile_url: state.console.tile_url.clone(),
            tile_crs: state.console.tile_crs,
        },
    }))
}
