/*
 * netshim: a pass-through PKCS#11 module that makes the token beneath it
 * behave as a network HSM does to its client. It sits below
 * C_GetFunctionList, so the client's real C calls are exercised:
 *
 *   - every call that crosses the network waits NETSHIM_DELAY_US
 *     microseconds first;
 *   - at most NETSHIM_MAX_SESSIONS sessions are open at once (0: no cap);
 *     C_OpenSession past the cap answers CKR_SESSION_COUNT, as a
 *     partition's session limit does; C_GetTokenInfo reports the cap as
 *     ulMaxSessionCount unless NETSHIM_HIDE_MAX is 1, as some clients'
 *     libraries do not;
 *   - every NETSHIM_DROP_EVERY-th call on a session (0: never) finds its
 *     session dropped, as a failover or a broken connection drops it: the
 *     session is closed beneath and the call answers
 *     CKR_SESSION_HANDLE_INVALID, as does every later call on it.
 *
 * The settings are compiled in (-D), so that two shims in one process are
 * two libraries with their own state. C_Finalize writes the counts of
 * refused and dropped sessions to NETSHIM_STATS.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <p11-kit/pkcs11.h>

#ifndef NETSHIM_DELAY_US
#define NETSHIM_DELAY_US 0
#endif
#ifndef NETSHIM_MAX_SESSIONS
#define NETSHIM_MAX_SESSIONS 0
#endif
#ifndef NETSHIM_HIDE_MAX
#define NETSHIM_HIDE_MAX 0
#endif
#ifndef NETSHIM_DROP_EVERY
#define NETSHIM_DROP_EVERY 0
#endif

static CK_FUNCTION_LIST_PTR real;
static CK_FUNCTION_LIST shim;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned long open_sessions;
static unsigned long calls __attribute__((unused));

/* What happened, written to NETSHIM_STATS when the library is finalised. */
static unsigned long refused_sessions;
static unsigned long dropped_sessions;

static void network(void)
{
	if (NETSHIM_DELAY_US > 0) {
		struct timespec ts = {NETSHIM_DELAY_US / 1000000, (NETSHIM_DELAY_US % 1000000) * 1000L};
		while (nanosleep(&ts, &ts) != 0)
			;
	}
}

/* dropped reports whether this call's session is dropped, and closes it
 * beneath if so. */
static int dropped(CK_SESSION_HANDLE h)
{
	int drop = 0;
#if NETSHIM_DROP_EVERY > 0
	pthread_mutex_lock(&mu);
	if (++calls % NETSHIM_DROP_EVERY == 0)
		drop = 1;
	pthread_mutex_unlock(&mu);
#endif
	if (drop && real->C_CloseSession(h) == CKR_OK) {
		pthread_mutex_lock(&mu);
		open_sessions--;
		dropped_sessions++;
		pthread_mutex_unlock(&mu);
	}
	return drop;
}

/* Calls that name no session. */
#define REMOTE(name, params, args)                                           \
	static CK_RV shim_##name params                                      \
	{                                                                    \
		network();                                                   \
		return real->name args;                                      \
	}

/* Calls on a session. */
#define SESSION(name, params, args)                                          \
	static CK_RV shim_##name params                                      \
	{                                                                    \
		network();                                                   \
		if (dropped(h))                                              \
			return CKR_SESSION_HANDLE_INVALID;                   \
		return real->name args;                                      \
	}

REMOTE(C_GetSlotList, (CK_BBOOL present, CK_SLOT_ID_PTR list, CK_ULONG_PTR n), (present, list, n))
REMOTE(C_GetSlotInfo, (CK_SLOT_ID slot, CK_SLOT_INFO_PTR info), (slot, info))
REMOTE(C_GetMechanismList, (CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR n), (slot, list, n))
REMOTE(C_GetMechanismInfo, (CK_SLOT_ID slot, CK_MECHANISM_TYPE t, CK_MECHANISM_INFO_PTR info), (slot, t, info))

SESSION(C_GetSessionInfo, (CK_SESSION_HANDLE h, CK_SESSION_INFO_PTR info), (h, info))
SESSION(C_Login, (CK_SESSION_HANDLE h, CK_USER_TYPE u, CK_UTF8CHAR_PTR pin, CK_ULONG n), (h, u, pin, n))
SESSION(C_Logout, (CK_SESSION_HANDLE h), (h))
SESSION(C_CreateObject, (CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR o), (h, t, n, o))
SESSION(C_DestroyObject, (CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o), (h, o))
SESSION(C_GetAttributeValue, (CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n), (h, o, t, n))
SESSION(C_SetAttributeValue, (CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n), (h, o, t, n))
SESSION(C_FindObjectsInit, (CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n), (h, t, n))
SESSION(C_FindObjects, (CK_SESSION_HANDLE h, CK_OBJECT_HANDLE_PTR o, CK_ULONG max, CK_ULONG_PTR n), (h, o, max, n))
SESSION(C_FindObjectsFinal, (CK_SESSION_HANDLE h), (h))
SESSION(C_EncryptInit, (CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k), (h, m, k))
SESSION(C_Encrypt, (CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG n, CK_BYTE_PTR out, CK_ULONG_PTR outn), (h, in, n, out, outn))
SESSION(C_DecryptInit, (CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k), (h, m, k))
SESSION(C_Decrypt, (CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG n, CK_BYTE_PTR out, CK_ULONG_PTR outn), (h, in, n, out, outn))
SESSION(C_SignInit, (CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k), (h, m, k))
SESSION(C_Sign, (CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG n, CK_BYTE_PTR out, CK_ULONG_PTR outn), (h, in, n, out, outn))
SESSION(C_SignUpdate, (CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG n), (h, in, n))
SESSION(C_SignFinal, (CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG_PTR outn), (h, out, outn))
SESSION(C_VerifyInit, (CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k), (h, m, k))
SESSION(C_Verify, (CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG n, CK_BYTE_PTR sig, CK_ULONG sign), (h, in, n, sig, sign))
SESSION(C_GenerateKey, (CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR k), (h, m, t, n, k))
SESSION(C_GenerateKeyPair,
	(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR pt, CK_ULONG pn, CK_ATTRIBUTE_PTR st, CK_ULONG sn, CK_OBJECT_HANDLE_PTR pk, CK_OBJECT_HANDLE_PTR sk),
	(h, m, pt, pn, st, sn, pk, sk))
SESSION(C_WrapKey, (CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE w, CK_OBJECT_HANDLE k, CK_BYTE_PTR out, CK_ULONG_PTR outn), (h, m, w, k, out, outn))
SESSION(C_UnwrapKey,
	(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE w, CK_BYTE_PTR in, CK_ULONG n, CK_ATTRIBUTE_PTR t, CK_ULONG tn, CK_OBJECT_HANDLE_PTR k),
	(h, m, w, in, n, t, tn, k))
SESSION(C_GenerateRandom, (CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG n), (h, out, n))

static CK_RV shim_C_GetTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info)
{
	CK_RV rv;
	network();
	rv = real->C_GetTokenInfo(slot, info);
	if (rv == CKR_OK && NETSHIM_MAX_SESSIONS > 0 && !NETSHIM_HIDE_MAX)
		info->ulMaxSessionCount = NETSHIM_MAX_SESSIONS;
	return rv;
}

static CK_RV shim_C_OpenSession(CK_SLOT_ID slot, CK_FLAGS flags, CK_VOID_PTR app, CK_NOTIFY notify, CK_SESSION_HANDLE_PTR h)
{
	CK_RV rv;
	network();
	pthread_mutex_lock(&mu);
	if (NETSHIM_MAX_SESSIONS > 0 && open_sessions >= NETSHIM_MAX_SESSIONS) {
		refused_sessions++;
		pthread_mutex_unlock(&mu);
		return CKR_SESSION_COUNT;
	}
	open_sessions++; /* held while the real call runs, so the cap is exact */
	pthread_mutex_unlock(&mu);
	rv = real->C_OpenSession(slot, flags, app, notify, h);
	if (rv != CKR_OK) {
		pthread_mutex_lock(&mu);
		open_sessions--;
		pthread_mutex_unlock(&mu);
	}
	return rv;
}

static CK_RV shim_C_CloseSession(CK_SESSION_HANDLE h)
{
	CK_RV rv;
	network();
	rv = real->C_CloseSession(h);
	if (rv == CKR_OK) {
		pthread_mutex_lock(&mu);
		open_sessions--;
		pthread_mutex_unlock(&mu);
	}
	return rv;
}

static CK_RV shim_C_CloseAllSessions(CK_SLOT_ID slot)
{
	CK_RV rv;
	network();
	rv = real->C_CloseAllSessions(slot);
	if (rv == CKR_OK) {
		pthread_mutex_lock(&mu);
		open_sessions = 0;
		pthread_mutex_unlock(&mu);
	}
	return rv;
}

static CK_RV shim_C_Finalize(CK_VOID_PTR reserved)
{
	CK_RV rv = real->C_Finalize(reserved);
	FILE *f;
	if (rv == CKR_OK) {
		pthread_mutex_lock(&mu);
		open_sessions = 0;
		if ((f = fopen(NETSHIM_STATS, "w")) != NULL) {
			fprintf(f, "refused=%lu dropped=%lu\n", refused_sessions, dropped_sessions);
			fclose(f);
		}
		pthread_mutex_unlock(&mu);
	}
	return rv;
}

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list)
{
	static void *lib;
	CK_RV (*get)(CK_FUNCTION_LIST_PTR_PTR);
	CK_RV rv;

	if (list == NULL)
		return CKR_ARGUMENTS_BAD;
	pthread_mutex_lock(&mu);
	if (real == NULL) {
		if (lib == NULL)
			lib = dlopen(NETSHIM_MODULE, RTLD_NOW | RTLD_LOCAL);
		if (lib == NULL || (get = (CK_RV(*)(CK_FUNCTION_LIST_PTR_PTR))dlsym(lib, "C_GetFunctionList")) == NULL) {
			pthread_mutex_unlock(&mu);
			return CKR_GENERAL_ERROR;
		}
		if ((rv = get(&real)) != CKR_OK) {
			pthread_mutex_unlock(&mu);
			return rv;
		}
		memcpy(&shim, real, sizeof shim);
#define SET(name) shim.name = shim_##name
		SET(C_Finalize);
		SET(C_GetSlotList);
		SET(C_GetSlotInfo);
		SET(C_GetTokenInfo);
		SET(C_GetMechanismList);
		SET(C_GetMechanismInfo);
		SET(C_OpenSession);
		SET(C_CloseSession);
		SET(C_CloseAllSessions);
		SET(C_GetSessionInfo);
		SET(C_Login);
		SET(C_Logout);
		SET(C_CreateObject);
		SET(C_DestroyObject);
		SET(C_GetAttributeValue);
		SET(C_SetAttributeValue);
		SET(C_FindObjectsInit);
		SET(C_FindObjects);
		SET(C_FindObjectsFinal);
		SET(C_EncryptInit);
		SET(C_Encrypt);
		SET(C_DecryptInit);
		SET(C_Decrypt);
		SET(C_SignInit);
		SET(C_Sign);
		SET(C_SignUpdate);
		SET(C_SignFinal);
		SET(C_VerifyInit);
		SET(C_Verify);
		SET(C_GenerateKey);
		SET(C_GenerateKeyPair);
		SET(C_WrapKey);
		SET(C_UnwrapKey);
		SET(C_GenerateRandom);
#undef SET
	}
	pthread_mutex_unlock(&mu);
	*list = &shim;
	return CKR_OK;
}
