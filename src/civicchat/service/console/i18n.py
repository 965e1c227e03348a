"""The console's own words in Catalan, Spanish and English (Catalan by default).

One register throughout: buttons, links and menu entries say what they do in the infinitive
(``Desar`` / ``Guardar``, ``Canviar la contrasenya`` / ``Cambiar la contraseña``), and sentences
address the operator formally (``vós`` in Catalan: ``No teniu permís``; ``usted`` in Spanish:
``No tiene permiso``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

__all__ = ["LANG_COOKIE", "TEXTS", "translator"]

LANG_COOKIE = "cc_lang"

# key: (ca, es, en)
_T: dict[str, tuple[str, str, str]] = {
    "app": ("Consola 010", "Consola 010", "010 console"),
    "login": ("Entrar", "Entrar", "Log in"),
    "logout": ("Sortir", "Salir", "Log out"),
    "username": ("Usuari", "Usuario", "User name"),
    "password": ("Contrasenya", "Contraseña", "Password"),
    "bad_login": (
        "Usuari o contrasenya incorrectes.",
        "Usuario o contraseña incorrectos.",
        "Wrong user name or password.",
    ),
    "queue": ("Cua", "Cola", "Queue"),
    "mine": ("Les meves converses", "Mis conversaciones", "My conversations"),
    "all": ("Totes", "Todas", "All"),
    "reports": ("Informes", "Informes", "Reports"),
    "cases_nav": ("Incidències", "Incidencias", "Cases"),
    "admin": ("Administració", "Administración", "Admin"),
    "waiting": ("Espera", "Espera", "Waiting"),
    "window_left": ("Finestra 24 h", "Ventana 24 h", "24 h window"),
    "window_closed": (
        "Finestra tancada: s'enviarà la plantilla de represa",
        "Ventana cerrada: se enviará la plantilla de reanudación",
        "Window closed: the re-engagement template will be sent",
    ),
    "no_conversations": ("Cap conversa.", "Ninguna conversación.", "No conversations."),
    "citizen": ("Ciutadà", "Ciudadano", "Citizen"),
    "channel": ("Canal", "Canal", "Channel"),
    "state": ("Estat", "Estado", "State"),
    "assigned_to": ("Assignada a", "Asignada a", "Assigned to"),
    "open": ("Obrir", "Abrir", "Open"),
    "take": ("Assignar-me-la", "Asignármela", "Assign to me"),
    "transfer": ("Transferir", "Transferir", "Transfer"),
    "to_queue": ("A la cua", "A la cola", "To the queue"),
    "close": ("Tancar", "Cerrar", "Close"),
    "send": ("Enviar", "Enviar", "Send"),
    "reply": ("Resposta", "Respuesta", "Reply"),
    "text": ("Text", "Texto", "Text"),
    "link": ("Enllaç", "Enlace", "Link"),
    "location": ("Ubicació", "Ubicación", "Location"),
    "document": ("Document (URL)", "Documento (URL)", "Document (URL)"),
    "latitude": ("Latitud", "Latitud", "Latitude"),
    "longitude": ("Longitud", "Longitud", "Longitude"),
    "name": ("Nom", "Nombre", "Name"),
    "filename": ("Nom del fitxer", "Nombre del archivo", "File name"),
    "canned": ("Respostes predefinides", "Respuestas predefinidas", "Canned responses"),
    "canned_hint": (
        "Escriviu / i la drecera a la resposta (p. ex. /foto).",
        "Escriba / y el atajo en la respuesta (p. ej. /foto).",
        "Type / and the shortcut in the reply (e.g. /foto).",
    ),
    "suggestions": ("Suggeriments", "Sugerencias", "Suggestions"),
    "use": ("Fer-la servir", "Usar", "Use"),
    "map": ("Mapa", "Mapa", "Map"),
    "download": ("Descarregar", "Descargar", "Download"),
    "media_pending": (
        "Fitxer pendent de descàrrega",
        "Archivo pendiente de descarga",
        "File not downloaded yet",
    ),
    "unsupported": ("Contingut no compatible", "Contenido no compatible", "Unsupported content"),
    "presence": ("Presència", "Presencia", "Presence"),
    "available": ("Disponible", "Disponible", "Available"),
    "away": ("Absent", "Ausente", "Away"),
    "offline": ("Desconnectat", "Desconectado", "Offline"),
    "change_password": ("Canviar la contrasenya", "Cambiar la contraseña", "Change password"),
    "current_password": ("Contrasenya actual", "Contraseña actual", "Current password"),
    "new_password": ("Contrasenya nova", "Contraseña nueva", "New password"),
    "repeat_password": ("Repetiu-la", "Repítala", "Repeat it"),
    "password_changed": ("Contrasenya canviada.", "Contraseña cambiada.", "Password changed."),
    "password_mismatch": (
        "Les contrasenyes no coincideixen.",
        "Las contraseñas no coinciden.",
        "The passwords do not match.",
    ),
    "password_short": (
        "La contrasenya ha de tenir com a mínim {n} caràcters.",
        "La contraseña debe tener al menos {n} caracteres.",
        "The password needs at least {n} characters.",
    ),
    "wrong_password": (
        "La contrasenya actual no és correcta.",
        "La contraseña actual no es correcta.",
        "The current password is wrong.",
    ),
    "save": ("Desar", "Guardar", "Save"),
    "saved": ("Desat.", "Guardado.", "Saved."),
    "validate": ("Validar", "Validar", "Validate"),
    "valid": ("Correcte.", "Correcto.", "Valid."),
    "preview": ("Previsualitzar", "Previsualizar", "Preview"),
    "keywords": ("Paraules clau", "Palabras clave", "Keywords"),
    "keyword": ("Paraula clau", "Palabra clave", "Keyword"),
    "topic": ("Tema", "Tema", "Topic"),
    "aliases": (
        "Àlies (un per línia o separats per comes)",
        "Alias (uno por línea o separados por comas)",
        "Aliases (one per line or separated by commas)",
    ),
    "edit": ("Editar", "Editar", "Edit"),
    "catalog": ("Catàleg complet", "Catálogo completo", "Whole catalog"),
    "hours": ("Horari i festius", "Horario y festivos", "Office hours and holidays"),
    "holidays": ("Festius", "Festivos", "Holidays"),
    "special_days": ("Dies especials", "Días especiales", "Special days"),
    "operators": ("Operadors i equips", "Operadores y equipos", "Operators and teams"),
    "accounts": ("Comptes", "Cuentas", "Accounts"),
    "templates": ("Plantilles", "Plantillas", "Templates"),
    "role": ("Rol", "Rol", "Role"),
    "role_operator": ("operador/a", "operador/a", "operator"),
    "role_supervisor": ("supervisor/a", "supervisor/a", "supervisor"),
    "role_admin": ("administrador/a", "administrador/a", "admin"),
    "capacity": ("Capacitat", "Capacidad", "Capacity"),
    "teams": (
        "Equips (separats per comes)",
        "Equipos (separados por comas)",
        "Teams (comma separated)",
    ),
    "teams_short": ("Equips", "Equipos", "Teams"),
    "languages": ("Idiomes", "Idiomas", "Languages"),
    "account": ("Compte", "Cuenta", "Account"),
    "create": ("Crear", "Crear", "Create"),
    "new_operator": ("Operador nou", "Operador nuevo", "New operator"),
    "transfer_offline": (
        "No es pot transferir a un operador desconnectat: trieu-ne un altre o deixeu-la a la cua.",
        "No se puede transferir a un operador desconectado: elija otro o déjela en la cola.",
        "Cannot transfer to an operator who is offline: choose another one or the queue.",
    ),
    "disable": ("Desactivar", "Desactivar", "Disable"),
    "enable": ("Reactivar", "Reactivar", "Enable"),
    "delete": ("Esborrar", "Borrar", "Delete"),
    "operator_is_disabled": ("desactivat", "desactivado", "disabled"),
    "operator_disabled": (
        "{name} desactivat: no pot entrar ni rep converses; les seves han tornat a la cua.",
        "{name} desactivado: no puede entrar ni recibe conversaciones; las suyas han vuelto a la cola.",
        "{name} disabled: cannot log in nor receive conversations; theirs went back to the queue.",
    ),
    "operator_enabled": ("{name} reactivat.", "{name} reactivado.", "{name} enabled again."),
    "operator_deleted": ("{name} esborrat.", "{name} borrado.", "{name} deleted."),
    "operator_in_use": (
        "No es pot esborrar {name}: té historial (converses, registre). Desactiveu-lo.",
        "No se puede borrar a {name}: tiene historial (conversaciones, registro). Desactívelo.",
        "{name} cannot be deleted: they have history (conversations, audit log). Disable them.",
    ),
    "self_disable": (
        "No us podeu desactivar ni esborrar a vosaltres mateixos.",
        "No puede desactivarse ni borrarse a sí mismo.",
        "You cannot disable or delete yourself.",
    ),
    "note_operator_disabled": ("operador desactivat", "operador desactivado", "operator disabled"),
    "alias_taken": (
        "L'àlies «{alias}» ja és de la paraula clau «{other}»: un àlies només pot ser d'una.",
        "El alias «{alias}» ya es de la palabra clave «{other}»: un alias solo puede ser de una.",
        "The alias '{alias}' already belongs to the keyword '{other}': an alias has one keyword.",
    ),
    "unknown_variables": (
        "Aquestes variables no existeixen i sortiran buides: {names}.",
        "Estas variables no existen y saldrán vacías: {names}.",
        "These variables do not exist and will render empty: {names}.",
    ),
    "reply_empty": (
        "Escriviu el text de la resposta.",
        "Escriba el texto de la respuesta.",
        "Write the text of the reply.",
    ),
    "too_long": (
        "Massa llarg: com a màxim {n} caràcters. Escurceu-lo i torneu a enviar.",
        "Demasiado largo: como máximo {n} caracteres. Acórtelo y vuelva a enviar.",
        "Too long: at most {n} characters. Shorten it and send again.",
    ),
    "bad_url": (
        "Cal una adreça que comenci per https:// o http://.",
        "Hace falta una dirección que empiece por https:// o http://.",
        "An address starting with https:// or http:// is needed.",
    ),
    "bad_latitude": (
        "Latitud entre -90 i 90, p. ex. 41,5391.",
        "Latitud entre -90 y 90, p. ej. 41,5391.",
        "A latitude between -90 and 90, e.g. 41.5391.",
    ),
    "bad_longitude": (
        "Longitud entre -180 i 180, p. ex. 2,4445.",
        "Longitud entre -180 y 180, p. ej. 2,4445.",
        "A longitude between -180 and 180, e.g. 2.4445.",
    ),
    "caption_hint": (
        "en un document, el text que l'acompanya",
        "en un documento, el texto que lo acompaña",
        "with a document, the text that goes with it",
    ),
    "login_taken": (
        "Ja hi ha un operador amb l'usuari «{login}»: trieu-ne un altre.",
        "Ya hay un operador con el usuario «{login}»: elija otro.",
        "An operator with the user name '{login}' already exists: choose another one.",
    ),
    "reset_password": ("Restablir la contrasenya", "Restablecer la contraseña", "Reset password"),
    "temporary_password": (
        "Contrasenya temporal (es mostra només ara):",
        "Contraseña temporal (solo se muestra ahora):",
        "Temporary password (shown only now):",
    ),
    "audit": ("Registre d'auditoria", "Registro de auditoría", "Audit log"),
    "count": ("Nombre", "Número", "Count"),
    "address": ("Número o bot", "Número o bot", "Number or bot"),
    "not_found": ("No s'ha trobat.", "No se ha encontrado.", "Not found."),
    "forbidden": (
        "No teniu permís per fer això.",
        "No tiene permiso para hacer esto.",
        "You are not allowed to do this.",
    ),
    "csrf": (
        "La sessió del formulari ha caducat. Torneu a carregar la pàgina.",
        "La sesión del formulario ha caducado. Vuelva a cargar la página.",
        "The form session expired. Reload the page.",
    ),
    "invalid": ("Dades no vàlides", "Datos no válidos", "Invalid data"),
    "contact": ("Contacte", "Contacto", "Contact"),
    "conversations": ("Converses", "Conversaciones", "Conversations"),
    "identities": ("Identitats", "Identidades", "Identities"),
    "language": ("Idioma", "Idioma", "Language"),
    "delivery": ("Lliurament", "Entrega", "Delivery"),
    "live": ("En directe", "En directo", "Live"),
    "reconnecting": ("Reconnectant…", "Reconectando…", "Reconnecting…"),
    "message": ("Missatge", "Mensaje", "Message"),
    "line": ("línia", "línea", "line"),
    "no_engine": (
        "Aquest compte no té catàleg de paraules clau.",
        "Esta cuenta no tiene catálogo de palabras clave.",
        "This account has no keyword catalog.",
    ),
    "no_hours": (
        "Aquest compte no té horari.",
        "Esta cuenta no tiene horario.",
        "This account has no office hours.",
    ),
    "read_only": (
        "Només lectura: aquest compte no té fitxer configurat.",
        "Solo lectura: esta cuenta no tiene archivo configurado.",
        "Read only: this account has no file configured.",
    ),
    "state_bot": ("amb el bot", "con el bot", "with the bot"),
    "state_queued": ("en espera", "en espera", "waiting"),
    "state_assigned": ("assignada", "asignada", "assigned"),
    "escalated": (
        "sense resposta: avisat el supervisor",
        "sin respuesta: avisado el supervisor",
        "no reply: supervisor alerted",
    ),
    "state_closed": ("tancada", "cerrada", "closed"),
    "day_monday": ("dilluns", "lunes", "Monday"),
    "day_tuesday": ("dimarts", "martes", "Tuesday"),
    "day_wednesday": ("dimecres", "miércoles", "Wednesday"),
    "day_thursday": ("dijous", "jueves", "Thursday"),
    "day_friday": ("divendres", "viernes", "Friday"),
    "day_saturday": ("dissabte", "sábado", "Saturday"),
    "day_sunday": ("diumenge", "domingo", "Sunday"),
    "tentative": (
        "data per confirmar (festiu previst, encara no publicat)",
        "fecha por confirmar (festivo previsto, aún no publicado)",
        "date to be confirmed (expected holiday, not published yet)",
    ),
    # The conversation's history (audit): who moved it and why, in the operator's language.
    "actor_bot": ("bot", "bot", "bot"),
    "actor_system": ("sistema", "sistema", "system"),
    "actor_citizen": ("ciutadà", "ciudadano", "citizen"),
    "actor_retention": ("conservació de dades", "conservación de datos", "retention"),
    "note_handoff": ("demana una persona", "pide una persona", "handoff"),
    "note_dispatch": ("assignació automàtica", "asignación automática", "dispatch"),
    "note_sticky": ("el seu darrer operador", "su último operador", "sticky"),
    "note_take": ("agafada", "tomada", "take"),
    "note_transfer": ("transferida", "transferida", "transfer"),
    "note_reply": ("resposta", "respuesta", "reply"),
    "note_operator_offline": ("operador desconnectat", "operador desconectado", "operator offline"),
    "note_keyword_answered": (
        "resposta automàtica",
        "respuesta automática",
        "keyword answered",
    ),
    "answered": ("respost", "respondido", "answered"),
    "taken": (
        "Un altre operador ja té aquesta conversa.",
        "Otro operador ya tiene esta conversación.",
        "Another operator has this conversation already.",
    ),
    "keyword_removed": (
        "ja no és al catàleg",
        "ya no está en el catálogo",
        "no longer in the catalog",
    ),
    "account_state": ("Estat", "Estado", "State"),
    "account_enabled": ("actiu", "activo", "enabled"),
    "account_disabled": ("desactivat", "desactivado", "disabled"),
    "secrets_missing": (
        "secrets no configurats: {names}",
        "secretos no configurados: {names}",
        "secrets not configured: {names}",
    ),
    "minutes": ("min", "min", "min"),
    "hours_short": ("h", "h", "h"),
}

TEXTS: Mapping[str, Mapping[str, str]] = {
    key: {"ca": ca, "es": es, "en": en} for key, (ca, es, en) in _T.items()
}

#: The login limiter's answer, always in both official languages (the person is not logged in).
RATE_LIMITED = (
    "Massa intents fallits. Torneu-ho a provar d'aquí a {minutes} minuts. / "
    "Demasiados intentos fallidos. Vuelva a intentarlo dentro de {minutes} minutos."
)


def translator(language: str) -> Callable[..., str]:
    """``t(key, **fields)`` in ``language``; an unknown key shows itself (easy to spot)."""

    def t(key: str, **fields: object) -> str:
        entry = TEXTS.get(key)
        text = key if entry is None else entry.get(language, entry["ca"])
        return text.format(**fields) if fields else text

    return t
