import { createContext, useContext } from 'react';
import type { User } from './api.js';

/** The signed-in user; researchers see no buttons that change state (the API refuses anyway). */
export const SessionContext = createContext<User | null>(null);

export function useUser(): User {
  const user = useContext(SessionContext);
  if (!user) throw new Error('useUser outside a session');
  return user;
}

export function useIsAdmin(): boolean {
  return useUser().role === 'admin';
}
